"""The transport to one registry host, in layers (go-containerregistry's `remote/transport`, regclient's
`reghttp`): `wire` sends one request and follows its redirects; the `Authenticator` says what
Authorization it carries; `Transport.send` is the one retry loop around both (a token fetch is an attempt
like any other), keeps the host's Retry-After and rate-limit readings, counts requests by kind and turns
an answer that is not the one asked for into a typed error."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from dmi_provider.registry.bearer import MAX_TOKEN_BODY, RETRYABLE_STATUS, Authenticator
from dmi_provider.registry.errors import (
    AuthError,
    InsecureRedirect,
    LoginNeeded,
    MaybeNeedsTLS,
    NeedsTLS,
    NotFound,
    RateLimited,
    RegistryError,
    html_summary,
    registry_error_text,
)
from dmi_provider.registry.network import http_client, transport_error
from dmi_provider.registry.ratelimit import RateLimit, head_pacer, limit_text, retry_after
from dmi_provider.registry.reference import DOCKER_HUB, DOCKER_HUB_API
from dmi_provider.registry.settings import HostSettings
from dmi_provider.registry.wire import (
    MAX_ERROR_BODY,
    Body,
    buffered,
    is_html,
    kind,
    origin,
    read_capped,
    send,
    shown_url,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """One request to the registry: `path` (or a full URL: an upload Location), the token `scope`, the
    statuses that count as success. Streaming bodies are not replayable: a failure after they started
    raises a retryable error for the caller to redo the whole step. With `retry=False` the caller owns
    the retries (one retry level per operation)."""

    method: str
    path: str
    scope: str
    headers: dict[str, str] | None = None
    content: Body = None
    stream: bool = False
    ok: tuple[int, ...] = (200,)
    retry: bool = True


class Transport:
    """Talks HTTP to one registry host with its settings. Thread-safe: copies share one per host."""

    def __init__(self, registry: str, settings: HostSettings, http: httpx.Client | None = None):
        self.registry, self.settings = registry, settings
        self.network, self.retry = settings.network, settings.retry
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.base_url = f"{'http' if self.network.insecure else 'https'}://{host}"
        # identity: digests are over the bytes as stored; a compressing proxy would change them.
        self.http = http or http_client(self.network, timeout=settings.timeout, follow_redirects=False,
                                        headers={"Accept-Encoding": "identity"},
                                        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self.auth = Authenticator(registry, self.base_url, settings.credentials)
        self.counts: Counter[str] = Counter()
        self.ratelimit: RateLimit | None = None
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request goes to this host (Retry-After)
        # Bounds the blob transfers running against this host at once, whatever copies share the transport.
        self.transfers = threading.BoundedSemaphore(settings.max_transfers)
        self.head_pacer = head_pacer(registry)  # Docker Hub: HEADs kept under the pace it tolerates

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def close(self) -> None:
        self.http.close()

    # -- the one retry loop -------------------------------------------------------------------------
    def send(self, call: Call) -> httpx.Response:
        """Send with auth, retries and safe redirects; the answer has one of `call.ok`'s statuses. An error
        names this host in `registry`, for the caller to tell source from target."""
        try:
            return self._send(call)
        except RegistryError as error:
            error.registry = error.registry or self.registry
            raise

    def _send(self, call: Call) -> httpx.Response:
        url = self.url(call.path)
        shown = shown_url(url)  # for messages: no upload state or signature
        own_host = self._check_url(call.method, url)
        replayable = call.retry and (call.content is None or isinstance(call.content, bytes))
        started, attempt, reauthed = time.monotonic(), 0, False
        while True:
            try:
                response = self._attempt(call, url, own_host)
            except RegistryError as error:
                if not replayable or not error.retryable:
                    raise
                attempt = self._backoff(attempt, started, error)
                continue
            if response.status_code in call.ok:
                if own_host and kind(urlsplit(url).path) != "blob" and is_html(response):
                    raise self._html_error(call.method, shown, response)
                return response
            if call.stream:
                response = buffered(response)
            if response.status_code == 401 and not self._from_own_host(response):
                raise AuthError(f"{call.method} {shown}: {response.url.netloc.decode()} (not the registry) answered "
                                f"401; credentials are sent to {self.registry} only", status=401, url=shown)
            if response.status_code == 401 and "www-authenticate" in response.headers and not reauthed:
                reauthed = True
                self.auth.unauthorized(response, call.scope)
                if call.content is None or isinstance(call.content, bytes):
                    continue
                raise RegistryError(f"{call.method} {shown}: unauthorized mid-stream; retry", status=401, url=shown,
                                    retryable=True)
            refused = self._error(call.method, shown, response)
            if refused.retry_after is not None:
                self._slow_down(refused.retry_after)
            if not refused.retryable or not replayable:
                raise refused
            attempt = self._backoff(attempt, started, refused)

    def _attempt(self, call: Call, url: str, own_host: bool) -> httpx.Response:
        """One try: the token first when none is cached (credentials stay with the registry's host), then
        the request. No HTTP answer at all is a RegistryError saying why."""
        headers = dict(call.headers or {})
        if call.method == "HEAD" and self.head_pacer is not None:
            self.head_pacer.wait()  # before the token: a long wait must not outlive it
        if own_host:
            needed, authorization = self.auth.cached(call.scope)
            if needed:
                authorization = self._fetch_token(call.scope)
            if authorization:
                headers["Authorization"] = authorization
        self._wait_turn()
        try:
            response = send(self.http, call.method, url, headers, call.content, call.stream)
        except httpx.TransportError as exc:
            raise transport_error(exc, shown_url(url), self.network, self.registry) from None
        self._count(f"{call.method} {kind(urlsplit(url).path)}", response)
        return response

    def _fetch_token(self, scope: str) -> str:
        request = self.auth.token_request(self.http, scope)
        try:
            response = self.http.send(request, stream=True)
            body = read_capped(response, MAX_TOKEN_BODY)
        except httpx.TransportError as exc:
            raise transport_error(exc, str(request.url), self.network, f"{self.registry} token service") from None
        with self._lock:
            self.counts[f"{request.method} token"] += 1
        return self.auth.accept(scope, response, body)

    def _backoff(self, attempt: int, started: float, error: RegistryError) -> int:
        if error.retry_after is not None and error.retry_after > self.retry.max_pause:
            # A long Retry-After (a spent pull limit): asking again sooner only spends more; say it now.
            raise _again(error, f"the registry asks to retry after {error.retry_after:.0f}s")
        attempt += 1
        delay = self.retry.delay(attempt - 1, error.retry_after, outage=error.outage)
        spent = time.monotonic() - started
        # Attempts are counted here even in an outage: a wrong host must fail fast. The blob copy's own
        # loop (blobs.py) is the one that waits a registry restart out, for the policy's whole time.
        if attempt >= self.retry.attempts or spent + delay > self.retry.total:
            raise _again(error, f"gave up after {attempt} attempts")
        log.warning("%s; retrying in %.1fs (attempt %d of %d)", error, delay, attempt + 1, self.retry.attempts)
        time.sleep(delay)
        return attempt

    # -- per-host state -----------------------------------------------------------------------------
    def _check_url(self, method: str, url: str) -> bool:
        """Refuse https -> http; True when `url` is on the registry's own host (an upload Location, for
        one, may name any host: credentials go only to the registry's own)."""
        own, target = urlsplit(self.base_url), urlsplit(url)
        if own.scheme == "https" and target.scheme != "https":
            raise InsecureRedirect(f"{method} {shown_url(url)}: refusing to leave https for {target.scheme}",
                                   url=shown_url(url))
        return origin(target) == origin(own)

    def _from_own_host(self, response: httpx.Response) -> bool:
        return origin(urlsplit(str(response.url))) == origin(urlsplit(self.base_url))

    def snapshot(self) -> Counter[str]:
        """The request counts so far (copies sharing this transport count at the same time)."""
        with self._lock:
            return Counter(self.counts)

    def _count(self, key: str, response: httpx.Response) -> None:
        with self._lock:
            self.counts[key] += 1
        if key.endswith(" manifest"):
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

    # -- answers that are not the one asked for -----------------------------------------------------
    def _html_error(self, method: str, url: str, response: httpx.Response) -> RegistryError:
        body = read_capped(response, MAX_ERROR_BODY) if not response.is_closed else response.content
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
        facts: dict[str, Any] = {"status": status, "code": code, "url": url}
        if status == 404:
            return NotFound(text, **facts)
        if status in (401, 403):
            login = self.auth.credentials
            who = f"the login of {login.username}" if login else "anonymous access"
            if status == 401 and not login:
                return LoginNeeded(f"{text}; {self.registry} refused {who}", **facts)
            hint = "check the user and password" if status == 401 else "the login lacks the rights for this repository"
            return AuthError(f"{text}; {self.registry} refused {who}: {hint}", **facts)
        if status == 400 and "HTTP request to an HTTPS server" in message:
            return NeedsTLS(f"{text}; this registry speaks HTTPS", **facts)
        if status == 400 and not code and self.base_url.startswith("http://"):  # a HEAD shows no body
            return MaybeNeedsTLS(f"{text}; this registry may speak HTTPS (a TLS port answers plain HTTP with 400)",
                                 **facts)
        again = status in RETRYABLE_STATUS
        wait = retry_after(response) if again else None
        if status in (502, 503, 504) and wait is None:  # a gateway in front of a registry that is down
            facts["outage"] = True
        if status == 429:
            return RateLimited(f"{text}; {self.registry}'s pull limit is spent{limit_text(response)}: wait for its "
                               "window", **facts, retryable=True, retry_after=wait)
        outage = facts.pop("outage", False)
        error = RegistryError(text, **facts, retryable=again, retry_after=wait)
        error.outage = outage
        return error


def _again(error: RegistryError, note: str) -> RegistryError:
    """The same error, of the same type, saying why the retries stopped; retryable later."""
    again = type(error)(f"{error} ({note})", status=error.status, code=error.code, url=error.url, retryable=True,
                        retry_after=error.retry_after)
    again.outage = error.outage
    return again
