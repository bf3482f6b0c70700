"""An OCI Distribution client for one registry host, on httpx.

- Auth: bearer tokens from WWW-Authenticate challenges (cached by scope, fetched ahead once the realm
  is known), basic auth; one re-auth on a 401, then a clear error.
- Redirects are followed by hand: Authorization never goes to another host, https never downgrades.
- Retries with exponential backoff and jitter on network errors, 408, 429 and 5xx, honouring
  Retry-After, bounded in count and total time; 4xx fail fast with the registry's code and message.
- Every request is counted by kind ("HEAD manifest", "GET blob", ...).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from dmi_provider.registry.auth import Challenge, Credentials, CredentialSource, TokenCache, parse_challenge
from dmi_provider.registry.errors import (
    AuthError,
    DigestMismatch,
    InsecureRedirect,
    ManifestInvalid,
    ManifestTooLarge,
    NotFound,
    RegistryError,
    html_summary,
    looks_like_html,
    registry_error_text,
)
from dmi_provider.registry.manifest import MANIFEST_TYPES, Descriptor, Manifest
from dmi_provider.registry.network import Network, http_client, transport_error
from dmi_provider.registry.reference import DOCKER_HUB, DOCKER_HUB_API

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit
MAX_ERROR_BODY = 64 * 1024  # error bodies are read this far (the message is at the start)
MAX_TOKEN_BODY = 1024 * 1024
MAX_TAGS_BODY = 4 * 1024 * 1024  # one page of a tag list
MAX_TAG_PAGES = 200
VERIFIABLE = ("sha256", "sha512")  # digest algorithms whose bytes this client can check
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CHUNK = 1024 * 1024
REFERRERS_API: dict[str, bool] = {}  # per registry URL: whether it has the referrers API (learnt once)
CHALLENGES: dict[str, Challenge] = {}  # per registry URL: its auth challenge, so later clients skip the 401
DOCKER_HUB_CHALLENGE = Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")


@dataclass(frozen=True)
class RetryPolicy:
    """`max_pause`: the longest Retry-After waited out in place; a longer one is the caller's (a task
    defers instead of holding its worker)."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 30.0
    total: float = 300.0
    max_pause: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # full jitter


@dataclass(frozen=True)
class Uploads:
    """How a registry takes blobs, a property of the registry (its target): `chunk` 0 sends each blob as one
    streaming PUT (GAR has no chunked uploads); N sends blobs larger than N as PATCHes of N bytes and a final
    PUT (ACR and proxies that refuse large bodies). `mounts`: ask for cross-repository mounts (GAR never
    fulfils them: asking only costs a round trip)."""

    chunk: int = 0
    mounts: bool = True


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's pull budget as its headers say: `ratelimit-limit: 100;w=21600`, `ratelimit-remaining`,
    `docker-ratelimit-source` (the IP, or the account when logged in)."""

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None  # seconds
    source: str | None = None
    seen_at: float = field(default=0.0, compare=False)  # wall clock of the response that said so

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimit | None:
        def number(name: str) -> tuple[int | None, int | None]:
            value, window = headers.get(name), None
            if not value:
                return None, None
            head, _, rest = value.partition(";")
            found = re.search(r"\bw=(\d+)", rest)
            if found:
                window = int(found.group(1))
            try:
                return int(head.strip()), window
            except ValueError:
                return None, window

        (limit, window), (remaining, _) = number("ratelimit-limit"), number("ratelimit-remaining")
        if limit is None and remaining is None:
            return None
        source = (headers.get("docker-ratelimit-source") or "").strip()[:100] or None
        return cls(limit, remaining, window, source, time.time())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of a streamed body (decoded), then the connection is let go."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= limit:
                break
    finally:
        response.close()
    return bytes(body[:limit])


def _buffered(response: httpx.Response) -> httpx.Response:
    """A streamed response with its body read, at most MAX_ERROR_BODY bytes of it (errors, HEADs, PUTs)."""
    body = _read_capped(response, MAX_ERROR_BODY)
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


def body_chunks(response: httpx.Response, size: int = CHUNK) -> Iterator[bytes]:
    """The body as the registry stored it: raw, unless a proxy compressed it on the way anyway."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.iter_raw(size) if encoding in ("", "identity") else response.iter_bytes(size)


def _limit_text(response: httpx.Response) -> str:
    """' (0 of 100 left)' from the answer's own rate-limit headers (an earlier reading may be stale)."""
    limit = RateLimit.from_headers(response.headers)
    if limit is None or limit.limit is None:
        return ""
    return f" ({limit.remaining if limit.remaining is not None else '?'} of {limit.limit} left)"


def _is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() in ("text/html",
                                                                                      "application/xhtml+xml")


def _origin(url: SplitResult) -> tuple[str, int | None]:
    """Host and port, the default port spelled out (`https://r.io` is `https://r.io:443`)."""
    return (url.hostname or "").lower(), url.port or {"https": 443, "http": 80}.get(url.scheme)


def _algorithm(digest: str, where: str) -> str:
    algorithm = digest.partition(":")[0]
    if algorithm not in VERIFIABLE:
        raise ManifestInvalid(f"{where}: cannot verify a {algorithm!r} digest (only {', '.join(VERIFIABLE)})")
    return algorithm


def _token_of(body: bytes, registry: str) -> tuple[str, float]:
    """(token, lifetime in seconds) from a token service's JSON answer."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        what = html_summary(body) if looks_like_html(body) else f"something that is not JSON ({len(body)} bytes)"
        raise AuthError(f"{registry}: token service answered with {what}: a captive portal or a proxy's page?"
                        ) from None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not token or not isinstance(token, str):
        raise AuthError(f"{registry}: token service answered without a token")
    try:
        expires_in = float(data.get("expires_in") or _jwt_lifetime(token) or 60)
    except (TypeError, ValueError):
        expires_in = 60.0
    return token, expires_in


def _jwt_lifetime(token: str) -> float | None:
    """Seconds left before a JWT's `exp` (ACR's tokens say so only there); None when it is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        left = float(claims["exp"]) - time.time()
    except (ValueError, KeyError, TypeError):
        return None
    return left if left > 0 else None


def _kind(path: str) -> str:
    if "/referrers/" in path:
        return "referrers"
    if "/manifests/" in path:
        return "manifest"
    if path.endswith("/tags/list"):
        return "tags"
    if "/blobs/uploads" in path:
        return "upload"
    if "/blobs/" in path:
        return "blob"
    return "other"


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


class RegistryClient:
    """Talks to one registry host. Thread-safe: copies share one client per host."""

    def __init__(self, registry: str, *, credentials: Credentials | CredentialSource | None = None,
                 insecure: bool = False, network: Network | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 60.0, http: httpx.Client | None = None,
                 max_transfers: int = 6, uploads: Uploads | None = None):
        self.registry = registry
        self.uploads = uploads or Uploads()
        self.network = (network or Network()).merge(Network(insecure=insecure))
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.base_url = f"{'http' if self.network.insecure else 'https'}://{host}"
        self._credentials = credentials
        self.retry = retry or RetryPolicy()
        # identity: digests are over the bytes as stored; a compressing proxy would change them.
        self.http = http or http_client(self.network, timeout=timeout, follow_redirects=False,
                                        headers={"Accept-Encoding": "identity"},
                                        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self.tokens = TokenCache()
        self.counts: Counter[str] = Counter()
        self.ratelimit: RateLimit | None = None
        self.pulls = 0  # manifest GETs answered 200: what Docker Hub counts as pulls
        # Docker Hub's token service is well known: asking it first saves a 401 round trip per process.
        self._challenge: Challenge | None = CHALLENGES.get(self.base_url) or (
            DOCKER_HUB_CHALLENGE if registry == DOCKER_HUB else None)
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request goes to this host (Retry-After)
        # Bounds the blob transfers running against this host at once, whatever copies share the client.
        self.transfers = threading.BoundedSemaphore(max_transfers)

    @property
    def credentials(self) -> Credentials | None:
        """The login, asked of its source each time, so that a token that expires (a cloud's) is
        renewed in the middle of a long copy."""
        source = self._credentials
        return source() if callable(source) else source

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth -------------------------------------------------------------------------------------
    def _token_key(self, scope: str) -> tuple[str, str, str] | None:
        challenge = self._challenge
        if challenge is None or challenge.scheme != "bearer":
            return None
        return (challenge.realm, challenge.service, scope)

    def _auth_header(self, scope: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        key = self._token_key(scope)
        assert key is not None
        token = self.tokens.get(key) or self._fetch_token(challenge, scope)
        return f"Bearer {token}"

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        if not challenge.realm.startswith(("https://", "http://")):
            raise AuthError(f"{self.registry}: token realm {challenge.realm!r} is not a URL")
        if self.base_url.startswith("https://") and challenge.realm.startswith("http://"):
            raise InsecureRedirect(f"{self.registry}: refusing a plain-HTTP token realm for an HTTPS registry")
        login = self.credentials
        params: list[tuple[str, str]] = [("service", challenge.service)] if challenge.service else []
        if login is not None and login.refresh_token:
            # OAuth2 (distribution's oauth spec, ACR): POST the refresh token; scopes space-separated in one field.
            method, headers, query = "POST", {}, None
            form: dict[str, str] | None = {**dict(params), "grant_type": "refresh_token", "client_id": "dmi",
                                           "refresh_token": login.password, "scope": scope}
        else:
            method, form, query = "GET", None, params + [("scope", s) for s in scope.split(" ") if s]
            headers = {"Authorization": login.basic_header()} if login else {}
        for attempt in range(self.retry.attempts):
            try:
                response = self.http.send(self.http.build_request(method, challenge.realm, params=query, data=form,
                                                                  headers=headers), stream=True)
                body = _read_capped(response, MAX_TOKEN_BODY)
            except httpx.TransportError as exc:
                error = transport_error(exc, challenge.realm, self.network, f"{self.registry} token service")
                if not error.retryable or attempt + 1 >= self.retry.attempts:
                    raise error from None
                time.sleep(self.retry.delay(attempt, None))
                continue
            self.counts[f"{method} token"] += 1
            if response.status_code in RETRYABLE_STATUS and attempt + 1 < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, _retry_after(response)))
                continue
            break
        if response.status_code != 200:
            who = f"as {login.username}" if login else "anonymously"
            code, message = registry_error_text(body)
            raise AuthError(f"{self.registry}: token service refused {who} for {scope}: HTTP {response.status_code}"
                            f"{' ' + message if message else ''}", status=response.status_code, code=code)
        token, expires_in = _token_of(body, self.registry)
        key = self._token_key(scope)
        assert key is not None
        self.tokens.put(key, token, expires_in)
        return token

    # -- requests -----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def request(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                content: bytes | Iterable[bytes] | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), retry: bool = True) -> httpx.Response:
        """Send with auth, retries and safe redirects. Streaming bodies are not replayable: a failure
        after they started raises a retryable RegistryError for the caller to redo the whole step.
        With `retry=False` the caller owns the retries (one retry level per operation)."""
        url = self.url(path)
        own_host = self._check_url(method, url)
        kind = _kind(urlsplit(url).path)
        replayable = retry and (content is None or isinstance(content, bytes))
        started = time.monotonic()
        attempt = 0
        reauthed = False
        while True:
            send_headers = dict(headers or {})
            auth = self._auth_header(scope) if own_host else None  # credentials stay with the registry's host
            if auth:
                send_headers["Authorization"] = auth
            self._wait_turn()
            try:
                response = self._send(method, url, send_headers, content, stream)
            except httpx.TransportError as exc:
                error = transport_error(exc, url, self.network, self.registry)
                if not replayable or not error.retryable:
                    raise error from None
                attempt = self._backoff(attempt, started, error)
                continue
            self._count(f"{method} {kind}", kind, response)
            if response.status_code in ok:
                if own_host and kind != "blob" and _is_html(response):
                    raise self._html_error(method, url, response)
                return response
            if stream:
                response = _buffered(response)
            if response.status_code == 401 and not self._from_own_host(response):
                raise AuthError(f"{method} {url}: {response.url.netloc.decode()} (not the registry) answered 401; "
                                f"credentials are sent to {self.registry} only", status=401, url=url)
            if response.status_code == 401 and "www-authenticate" in response.headers and not reauthed:
                reauthed = True
                self._on_unauthorized(response, scope)
                if content is None or isinstance(content, bytes):
                    continue
                raise RegistryError(f"{method} {url}: unauthorized mid-stream; retry", status=401, url=url,
                                    retryable=True)
            error = self._error(method, url, response)
            if error.retry_after is not None:
                self._slow_down(error.retry_after)
            if not error.retryable or not replayable:
                raise error
            attempt = self._backoff(attempt, started, error)

    def _check_url(self, method: str, url: str) -> bool:
        """Refuse https -> http; True when `url` is on the registry's own host (an upload Location, for
        one, may name any host: credentials go only to the registry's own)."""
        own, target = urlsplit(self.base_url), urlsplit(url)
        if own.scheme == "https" and target.scheme != "https":
            raise InsecureRedirect(f"{method} {url}: refusing to leave https for {target.scheme}", url=url)
        return _origin(target) == _origin(own)

    def _from_own_host(self, response: httpx.Response) -> bool:
        return _origin(urlsplit(str(response.url))) == _origin(urlsplit(self.base_url))

    def _count(self, key: str, kind: str, response: httpx.Response) -> None:
        with self._lock:
            self.counts[key] += 1
        if kind == "manifest":
            limit = RateLimit.from_headers(response.headers)
            if limit is not None:
                self.ratelimit = limit

    def _wait_turn(self) -> None:
        """Every thread talking to this host waits out a Retry-After that any of them was given."""
        delay = self._not_before - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _slow_down(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + min(seconds, self.retry.max_delay))

    def _on_unauthorized(self, response: httpx.Response, scope: str) -> None:
        challenge = parse_challenge(response.headers["www-authenticate"])
        if challenge.scheme == "basic" and not self.credentials:
            raise AuthError(f"{self.registry}: needs credentials (basic auth) and none were given", status=401)
        if challenge.scheme not in ("basic", "bearer"):
            raise AuthError(f"{self.registry}: unsupported auth scheme {challenge.scheme!r}", status=401)
        key = self._token_key(scope)
        if key is not None:
            self.tokens.drop(key)  # expired or too narrow: fetch a fresh one
        self._challenge = CHALLENGES[self.base_url] = challenge

    def _backoff(self, attempt: int, started: float, error: RegistryError) -> int:
        if error.retry_after is not None and error.retry_after > self.retry.max_pause:
            # A long Retry-After (a spent pull limit): asking again sooner only spends more; say it now.
            raise RegistryError(f"{error} (the registry asks to retry after {error.retry_after:.0f}s)",
                                status=error.status, code=error.code, url=error.url, retryable=True,
                                retry_after=error.retry_after)
        attempt += 1
        delay = self.retry.delay(attempt - 1, error.retry_after)
        if attempt >= self.retry.attempts or time.monotonic() - started + delay > self.retry.total:
            raise RegistryError(f"{error} (gave up after {attempt} attempts)", status=error.status, code=error.code,
                                url=error.url, retryable=True, retry_after=error.retry_after)
        log.warning("%s; retrying in %.1fs (attempt %d of %d)", error, delay, attempt + 1, self.retry.attempts)
        time.sleep(delay)
        return attempt

    def _html_error(self, method: str, url: str, response: httpx.Response) -> RegistryError:
        body = _read_capped(response, MAX_ERROR_BODY) if not response.is_closed else response.content
        return RegistryError(f"{self.registry}: {method} {url} answered HTTP {response.status_code} with "
                             f"{html_summary(body)}, not the registry API: a captive portal, a proxy's login page, "
                             "or no registry at this address; check the registry's host and the proxy",
                             status=response.status_code, url=url)

    def _error(self, method: str, url: str, response: httpx.Response) -> RegistryError:
        code, message = registry_error_text(response.content)
        text = f"{method} {url}: HTTP {response.status_code}"
        if code:
            text += f" {code}"
        if message:
            text += f": {message}"
        status = response.status_code
        if status == 429:
            text += (f"; {self.registry}'s pull limit is spent{_limit_text(response)}: wait for its window, or log "
                     "in with source-conn-id for an account's larger limit")
        elif status == 400 and "HTTP request to an HTTPS server" in message:
            text += "; this registry speaks HTTPS: remove it from insecure-registries"
        elif status == 400 and not code and self.base_url.startswith("http://"):  # a HEAD shows no body
            text += ("; if this registry speaks HTTPS (a TLS port answers plain HTTP with 400), remove it from "
                     "insecure-registries")
        if status == 404:
            return NotFound(text, status=status, code=code, url=url)
        if status in (401, 403):
            who = f"the login of {self.credentials.username}" if self.credentials else "anonymous access"
            hint = ("check the user and password" if status == 401 and self.credentials else
                    "give a login (source-conn-id / target-conn-id)" if status == 401 else
                    "the login lacks the rights for this repository")
            return AuthError(f"{text}; {self.registry} refused {who}: {hint}", status=status, code=code, url=url)
        return RegistryError(text, status=status, code=code, url=url, retryable=status in RETRYABLE_STATUS,
                             retry_after=_retry_after(response) if status in RETRYABLE_STATUS else None)

    def _send(self, method: str, url: str, headers: dict[str, str], content: bytes | Iterable[bytes] | None,
              stream: bool) -> httpx.Response:
        for _ in range(6):
            request = self.http.build_request(method, url, headers=headers, content=content)
            response = self.http.send(request, stream=True)
            if response.status_code not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return response if stream else _buffered(response)
            location = response.headers.get("location")
            response.close()
            if not location:
                return response
            target = urljoin(url, location)
            old, new = urlsplit(url), urlsplit(target)
            if old.scheme == "https" and new.scheme != "https":
                raise InsecureRedirect(f"{method} {url}: refusing a redirect from https to {new.scheme}")
            if new.netloc != old.netloc:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
        raise RegistryError(f"{method} {url}: too many redirects", url=url)

    # -- the distribution API -----------------------------------------------------------------
    def check(self, scope: str) -> str:
        """GET /v2/ logged in with a token for `scope`: proves the registry answers and takes the login.
        Returns what was proven."""
        self.request("GET", "/v2/", scope=scope)
        challenge = self._challenge
        who = f"as {self.credentials.username}" if self.credentials else "anonymously"
        if challenge is None:
            return "it asks for no login"
        if challenge.scheme == "basic":
            return f"logged in {who} (basic auth)"
        return f"logged in {who}: {challenge.realm} gave a token for {scope}"

    def check_push(self, repo: str) -> None:
        """Open an upload and cancel it: proves the login may push to `repo`, writing nothing."""
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=push_scope(repo), ok=(202,))
        if r.headers.get("location"):
            self.cancel_upload(repo, urljoin(self.base_url + "/", r.headers["location"]))

    def head_manifest(self, repo: str, ref: str) -> Descriptor | None:
        try:
            r = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", scope=pull_scope(repo),
                             headers={"Accept": MANIFEST_TYPES})
        except NotFound:
            return None
        digest = r.headers.get("docker-content-digest")
        if not digest:
            return None  # some registries omit it on HEAD: callers then GET
        return Descriptor(r.headers.get("content-type", "").split(";")[0].strip(), digest,
                          int(r.headers.get("content-length") or 0))

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """GET a manifest; bytes kept exactly, checked against the digest asked for or announced."""
        url = f"/v2/{repo}/manifests/{ref}"
        if ":" in ref:
            _algorithm(ref, self.url(url))  # refuse what cannot be checked before asking
        r = self.request("GET", url, scope=pull_scope(repo), headers={"Accept": MANIFEST_TYPES}, stream=True)
        try:
            declared = int(r.headers.get("content-length") or 0)
            if declared > MAX_MANIFEST_BYTES:
                raise ManifestTooLarge(f"{self.url(url)}: manifest of {declared} bytes is over the "
                                       f"{MAX_MANIFEST_BYTES} byte limit")
            body = bytearray()
            for chunk in body_chunks(r):
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise ManifestTooLarge(f"{self.url(url)}: manifest over the {MAX_MANIFEST_BYTES} byte limit")
        finally:
            r.close()
        raw = bytes(body)
        with self._lock:
            self.pulls += 1
        expected = ref if ":" in ref else r.headers.get("docker-content-digest")
        if expected:
            algorithm = _algorithm(expected, self.url(url))
            actual = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
            if actual != expected:
                raise DigestMismatch(f"{self.url(url)}: manifest bytes hash to {actual}, expected {expected}",
                                     url=self.url(url))
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        return Manifest.parse(raw, media_type, "sha256:" + hashlib.sha256(raw).hexdigest())

    def list_tags(self, repo: str, page: int = 500) -> list[str]:
        """Every tag of a repository, following the registry's `Link: <…>; rel="next"` pages (`n`/`last`).
        Not a pull in Docker Hub's accounting."""
        url, tags = f"/v2/{repo}/tags/list?n={page}", []
        for _ in range(MAX_TAG_PAGES):
            r = self.request("GET", url, scope=pull_scope(repo), stream=True)
            body = _read_capped(r, MAX_TAGS_BODY + 1)
            if len(body) > MAX_TAGS_BODY:
                raise RegistryError(f"{self.url(url)}: a tag list page over {MAX_TAGS_BODY} bytes")
            try:
                found = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.url(url)}: the tag list is not JSON") from None
            tags += [t for t in found if isinstance(t, str)]
            following = r.links.get("next", {}).get("url")
            if not following:
                return list(dict.fromkeys(tags))
            url = urljoin(self.base_url + "/", following)
        raise RegistryError(f"{self.registry}/{repo}: more than {MAX_TAG_PAGES} pages of tags")

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        return self.put_manifest_answer(repo, ref, manifest)[0]

    def put_manifest_answer(self, repo: str, ref: str, manifest: Manifest) -> tuple[str, bool]:
        """(digest stored, whether the registry indexed the manifest's subject itself: `OCI-Subject`)."""
        r = self.request("PUT", f"/v2/{repo}/manifests/{ref}", scope=push_scope(repo), content=manifest.raw,
                         headers={"Content-Type": manifest.media_type}, ok=(200, 201))
        digest = r.headers.get("docker-content-digest", manifest.digest)
        if digest != manifest.digest:
            raise DigestMismatch(f"{self.registry}/{repo}:{ref}: registry stored {digest}, sent {manifest.digest}")
        return digest, bool(r.headers.get("oci-subject"))

    def referrers(self, repo: str, digest: str) -> list[Descriptor] | None:
        """The OCI 1.1 referrers of a digest, or None where the registry has no referrers API (it answers
        404 there: a registry that has it never does). Follows `Link` pages. Not a pull."""
        if REFERRERS_API.get(self.base_url) is False:
            return None  # this registry said so once in this process: no need to ask for every digest
        url, found = f"/v2/{repo}/referrers/{digest}", []
        for _ in range(MAX_TAG_PAGES):
            try:
                r = self.request("GET", url, scope=pull_scope(repo), stream=True,
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json"})
            except NotFound:
                REFERRERS_API[self.base_url] = False
                return None
            REFERRERS_API[self.base_url] = True
            body = _read_capped(r, MAX_MANIFEST_BYTES + 1)
            if len(body) > MAX_MANIFEST_BYTES:
                raise ManifestTooLarge(f"{self.url(url)}: a referrers page over {MAX_MANIFEST_BYTES} bytes")
            found += Manifest.parse(body, "application/vnd.oci.image.index.v1+json").children
            following = r.links.get("next", {}).get("url")
            if not following:
                return found
            url = urljoin(self.base_url + "/", following)
        raise RegistryError(f"{self.registry}/{repo}: more than {MAX_TAG_PAGES} pages of referrers of {digest}")

    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=pull_scope(repo))
        except NotFound:
            return False
        return True

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. Returns None when mounted (201); else the Location of the upload the
        registry opened instead (202), for upload_blob to use, or "" when no upload was opened."""
        if not self.uploads.mounts:
            return ""
        scope = f"{push_scope(repo)} {pull_scope(from_repo)}"
        try:
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}", scope=scope,
                             ok=(201, 202))
        except RegistryError as exc:
            if exc.retryable:
                raise
            return ""  # mounting is an optimisation: a refusal means upload instead
        if r.status_code == 201:
            return None
        location = r.headers.get("location")
        return urljoin(self.base_url + "/", location) if location else ""

    def cancel_upload(self, repo: str, location: str) -> None:
        with contextlib.suppress(RegistryError):  # best effort: registries purge stale uploads themselves
            self.request("DELETE", location, scope=push_scope(repo), ok=(200, 202, 204, 404))

    def repository_empty(self, repo: str) -> bool:
        """Whether the repository has no tags (or does not exist yet): then none of its blobs can be there
        but through a mount, and the blob HEADs of a cold copy can be skipped. Unsure means False."""
        try:
            r = self.request("GET", f"/v2/{repo}/tags/list?n=1", scope=pull_scope(repo), ok=(200, 404))
            return r.status_code == 404 or not (r.json() or {}).get("tags")
        except (RegistryError, ValueError, AttributeError):
            return False

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str, retry: bool = True) -> Iterator[httpx.Response]:
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=pull_scope(repo), stream=True, retry=retry)
        try:
            yield r
        finally:
            r.close()

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes], retry: bool = True,
                    location: str | None = None) -> None:
        """POST an upload (or use `location`, one a refused mount opened), then one streaming PUT ?digest=
        (memory stays flat whatever the size); a registry with `Uploads.chunk` takes a larger blob as PATCHes of
        that size first (memory: one chunk)."""
        scope = push_scope(repo)
        if not location:
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,), retry=retry)
            if not r.headers.get("location"):
                raise RegistryError(f"{self.registry}/{repo}: upload opened without a Location")
            location = urljoin(self.base_url + "/", r.headers["location"])
        try:
            rest: Iterable[bytes] = chunks
            if self.uploads.chunk and size > self.uploads.chunk:
                location, rest, size = self._patch_chunks(location, scope, chunks, size)
            target = location + ("&" if "?" in location else "?") + f"digest={digest}"
            self.request("PUT", target, scope=scope, content=rest, ok=(201, 204),
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: do not leave the upload open
                self.request("DELETE", location, scope=scope, ok=(200, 202, 204, 404))
            raise

    def _patch_chunks(self, location: str, scope: str, chunks: Iterable[bytes],
                      size: int) -> tuple[str, list[bytes], int]:
        """PATCH whole chunks while more than one chunk's worth remains; returns the upload's last Location
        and what is left for the final PUT (so the PUT still comes only after the caller's last bytes)."""
        step, sent, buffer = self.uploads.chunk, 0, bytearray()
        for piece in chunks:
            buffer += piece
            while len(buffer) > step and sent + step < size:
                body = bytes(buffer[:step])
                del buffer[:step]
                r = self.request("PATCH", location, scope=scope, content=body, ok=(202,), retry=False,
                                 headers={"Content-Type": "application/octet-stream", "Content-Length": str(step),
                                          "Content-Range": f"{sent}-{sent + step - 1}"})
                sent += step
                location = urljoin(location, r.headers.get("location") or location)
        return location, [bytes(buffer)], len(buffer)
