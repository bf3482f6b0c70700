"""How one registry host is logged in to: its WWW-Authenticate challenge (learnt once per process), basic
auth or bearer tokens cached by scope. This layer builds the token request and reads the answer; the
transport sends it through its one retry loop, as the registry's own requests."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import httpx

from dmi_provider.registry.auth import Challenge, Credentials, CredentialSource, TokenCache, parse_challenge
from dmi_provider.registry.errors import (
    AuthError,
    InsecureRedirect,
    LoginNeeded,
    html_summary,
    looks_like_html,
    registry_error_text,
)
from dmi_provider.registry.ratelimit import retry_after
from dmi_provider.registry.reference import DOCKER_HUB
from dmi_provider.registry.wire import loads

MAX_TOKEN_BODY = 1024 * 1024
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CHALLENGES: dict[str, Challenge] = {}  # per registry URL: its auth challenge, so later clients skip the 401
DOCKER_HUB_CHALLENGE = Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")


class Authenticator:
    """The login state of one host. Thread-safe as its token cache; the challenge is replaced whole."""

    def __init__(self, registry: str, base_url: str, credentials: Credentials | CredentialSource | None):
        self.registry, self.base_url = registry, base_url
        self._credentials = credentials
        self.tokens = TokenCache()
        # Docker Hub's token service is well known: asking it first saves a 401 round trip per process.
        self.challenge: Challenge | None = CHALLENGES.get(base_url) or (
            DOCKER_HUB_CHALLENGE if registry == DOCKER_HUB else None)

    @property
    def credentials(self) -> Credentials | None:
        """The login, asked of its source each time, so that a token that expires (a cloud's) is
        renewed in the middle of a long copy."""
        source = self._credentials
        return source() if callable(source) else source

    def who(self) -> str:
        login = self.credentials
        return f"as {login.username}" if login else "anonymously"

    def key(self, scope: str) -> tuple[str, str, str] | None:
        challenge = self.challenge
        if challenge is None or challenge.scheme != "bearer":
            return None
        return (challenge.realm, challenge.service, scope)

    def cached(self, scope: str) -> tuple[bool, str | None]:
        """(whether a token must be fetched first, the Authorization header known without one)."""
        challenge = self.challenge
        if challenge is None:
            return False, None
        if challenge.scheme == "basic":
            login = self.credentials
            return False, login.basic_header() if login else None
        key = self.key(scope)
        token = self.tokens.get(key) if key else None
        return token is None, f"Bearer {token}" if token else None

    def token_request(self, http: httpx.Client, scope: str) -> httpx.Request:
        challenge = self.challenge
        assert challenge is not None
        if not challenge.realm.startswith(("https://", "http://")):
            raise AuthError(f"{self.registry}: token realm {challenge.realm!r} is not a URL")
        if self.base_url.startswith("https://") and challenge.realm.startswith("http://"):
            raise InsecureRedirect(f"{self.registry}: refusing a plain-HTTP token realm for an HTTPS registry")
        login = self.credentials
        if login is not None and login.own_realm and _host(challenge.realm) != _host(self.base_url):
            raise AuthError(f"{self.registry}: token realm {challenge.realm!r} is not on the registry's own host: "
                            "refusing to send a cloud login there (ECR, GAR and ACR issue tokens on the registry)")
        params: list[tuple[str, str]] = [("service", challenge.service)] if challenge.service else []
        if login is not None and login.refresh_token:
            # OAuth2 (distribution's oauth spec, ACR): POST the refresh token; scopes space-separated in one field.
            form = {**dict(params), "grant_type": "refresh_token", "client_id": "dmi",
                    "refresh_token": login.password, "scope": scope}
            return http.build_request("POST", challenge.realm, data=form)
        query: list[tuple[str, str | int | float | bool | None]] = [*params, *(("scope", s) for s in scope.split(" ")
                                                                                if s)]
        headers = {"Authorization": login.basic_header()} if login else {}
        return http.build_request("GET", challenge.realm, params=query, headers=headers)

    def accept(self, scope: str, response: httpx.Response, body: bytes) -> str:
        """The Authorization header from the token service's answer (kept for the scope), or AuthError
        (retryable when the service's status says trying again may help)."""
        status = response.status_code
        if status != 200:
            code, message = registry_error_text(body)
            again = status in RETRYABLE_STATUS
            raise AuthError(f"{self.registry}: token service refused {self.who()} for {scope}: HTTP {status}"
                            f"{' ' + message if message else ''}", status=status, code=code, retryable=again,
                            retry_after=retry_after(response) if again else None)
        token, expires_in = token_of(body, self.registry)
        key = self.key(scope)
        assert key is not None
        self.tokens.put(key, token, expires_in)
        return f"Bearer {token}"

    def unauthorized(self, response: httpx.Response, scope: str) -> None:
        """A 401 with a challenge: learn it (for this process), drop the token that did not do."""
        challenge = parse_challenge(response.headers["www-authenticate"])
        if challenge.scheme == "basic" and not self.credentials:
            raise LoginNeeded(f"{self.registry}: needs credentials (basic auth) and none were given", status=401)
        if challenge.scheme not in ("basic", "bearer"):
            raise AuthError(f"{self.registry}: unsupported auth scheme {challenge.scheme!r}", status=401)
        key = self.key(scope)
        if key is not None:
            self.tokens.drop(key)  # expired or too narrow: fetch a fresh one
        self.challenge = CHALLENGES[self.base_url] = challenge


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def token_of(body: bytes, registry: str) -> tuple[str, float]:
    """(token, lifetime in seconds) from a token service's JSON answer."""
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError):
        what = html_summary(body) if looks_like_html(body) else f"something that is not JSON ({len(body)} bytes)"
        raise AuthError(f"{registry}: token service answered with {what}: a captive portal or a proxy's page?"
                        ) from None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not token or not isinstance(token, str):
        raise AuthError(f"{registry}: token service answered without a token")
    try:
        expires_in = float(data.get("expires_in") or jwt_lifetime(token) or 60)
    except (TypeError, ValueError):
        expires_in = 60.0
    return token, expires_in


def jwt_lifetime(token: str) -> float | None:
    """Seconds left before a JWT's `exp` (ACR's tokens say so only there); None when it is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        left = float(claims["exp"]) - time.time()
    except (ValueError, KeyError, TypeError):
        return None
    return left if left > 0 else None
