"""An HTTP proxy in front of a registry that counts requests and injects faults.

It also plays Docker Hub's rate limit when asked: `ratelimit-limit: L;w=W` / `ratelimit-remaining` /
`docker-ratelimit-source` on manifest responses, a manifest GET spends one pull (a HEAD spends none),
a pull comes back W seconds after it was spent (a sliding window), and 429 TOOMANYREQUESTS when the
pulls run out. A logged-in user (a bearer token with a `sub`) has a budget of its own, `user_ratelimit`.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.rig.process import free_port

ANONYMOUS = "127.0.0.1"  # who pays for anonymous pulls: the client's IP, as Docker Hub counts
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "host"}
_KIND = [
    ("manifest", re.compile(r"^/v2/.+/manifests/[^/]+$")),
    ("upload", re.compile(r"^/v2/.+/blobs/uploads/.*$")),
    ("blob", re.compile(r"^/v2/.+/blobs/[^/]+$")),
    ("base", re.compile(r"^/v2/?$")),
]


def kind_of(path: str) -> str:
    for name, pattern in _KIND:
        if pattern.match(path):
            return name
    return "other"


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    kind: str
    status: int


@dataclass
class Fault:
    """What to do to requests that match: answer with `status`, reset the connection after
    `after_bytes` of the body, corrupt the body, or gzip it. Applies `times` times (None: always)."""

    method: str | None = None
    path: str = ".*"  # regex searched in the path
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset_after: int | None = None
    corrupt: bool = False
    gzip: str | None = None  # "if-accepted" (a CDN honouring Accept-Encoding) or "always" (a broken one)
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and re.search(self.path, path) is not None


class Proxy:
    def __init__(self, upstream: str, ratelimit: int | None = None, window: int = 21600,
                 user_ratelimit: int | None = None, retry_after_429: str | None = "60"):
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.hits: list[Hit] = []
        self.faults: list[Fault] = []
        self.ratelimit = ratelimit
        self.user_ratelimit = user_ratelimit
        self.window = window
        self.retry_after_429 = retry_after_429
        # Play a registry with the OCI 1.1 referrers API (distribution 2.8 has none): answer
        # /v2/<name>/referrers/<digest> from the fallback tag's index, and on a manifest PUT with a
        # `subject` keep that index up to date itself and say so with `OCI-Subject`.
        self.referrers_api = False
        self.spends: dict[str, deque[float]] = {}  # pulls spent, by who Docker Hub counts (IP or user)
        self.bytes_out = 0
        self.bytes_in = 0  # request bodies forwarded (uploads)
        self.compressed = 0  # responses this proxy gzipped
        # distribution 2.8 ignores n/last on tag lists; set this to page them as Docker Hub and distribution 3
        # do: sorted, `n` a page, `Link: <…?n=N&last=T>; rel="next"` while more remain.
        self.tag_page: bool = False
        self.latency = 0.0  # seconds added before each request is answered: a far-away registry
        self.bytes_per_second: float | None = None  # the link's bandwidth, each direction (None: loopback's)
        self._link_free = {"up": 0.0, "down": 0.0}  # when each direction of the link is next free
        self.in_flight: Counter[str] = Counter()  # open requests by "METHOD kind", and their high mark
        self.max_in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- what the tests read -------------------------------------------------------------------
    def count(self, method: str | None = None, kind: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for h in self.hits
                if (method is None or h.method == method) and (kind is None or h.kind == kind)
                and (status is None or h.status == status)
            )

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.faults.clear()
            self.bytes_out = self.bytes_in = 0
            self.max_in_flight.clear()
            self.spends.clear()

    @property
    def remaining(self) -> int | None:
        """The anonymous budget left now (what an unauthenticated client sees)."""
        return self._left(ANONYMOUS, self.ratelimit)

    @remaining.setter
    def remaining(self, value: int) -> None:
        """Spend pulls now so that `value` remain (they come back one window later)."""
        with self._lock:
            self.spends[ANONYMOUS] = deque([time.monotonic()] * max((self.ratelimit or 0) - value, 0))

    def _left(self, who: str, limit: int | None) -> int | None:
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            spent = self.spends.setdefault(who, deque())
            while spent and spent[0] <= now - self.window:
                spent.popleft()
            return max(limit - len(spent), 0)

    def _who(self, request: Request) -> tuple[str, int | None]:
        """Who pays for a pull: a logged-in user (its token's `sub`) when user_ratelimit is set, else the IP."""
        auth = request.headers.get("authorization", "")
        if self.user_ratelimit is not None and auth.lower().startswith("bearer "):
            try:
                payload = auth.split(" ", 1)[1].split(".")[1]
                sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("sub")
            except (IndexError, ValueError):
                sub = None
            if sub:
                return f"user:{sub}", self.user_ratelimit
        return ANONYMOUS, self.ratelimit

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    # -- the proxy ------------------------------------------------------------------------------
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.hits.append(Hit(method, path, kind_of(path), status))

    def _ratelimit_headers(self, who: str, limit: int | None) -> dict[str, str]:
        if limit is None:
            return {}
        return {"ratelimit-limit": f"{limit};w={self.window}",
                "ratelimit-remaining": f"{self._left(who, limit)};w={self.window}",
                "docker-ratelimit-source": who.removeprefix("user:")}

    async def app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        method, path = request.method, request.url.path
        kind = kind_of(path)
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take_fault(method, path)
        if fault is not None and fault.status is not None:
            self._record(method, path, fault.status)
            await Response(fault.body, fault.status, headers=fault.headers)(scope, receive, send)
            return
        if self.referrers_api and method == "GET" and "/referrers/" in path:
            await self._referrers(path, request, scope, receive, send)
            return
        if self.tag_page and method == "GET" and path.endswith("/tags/list"):
            await self._tag_page(request, path, scope, receive, send)
            return
        who, limit = self._who(request)
        spends_pull = kind == "manifest" and limit is not None and method == "GET"
        if spends_pull and (self._left(who, limit) or 0) <= 0:
            body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull "
                                           "rate limit. (rig stand-in for Docker Hub)"}]}).encode()
            self._record(method, path, 429)
            headers = {**self._ratelimit_headers(who, limit), "Content-Type": "application/json"}
            if self.retry_after_429:
                headers["Retry-After"] = self.retry_after_429
            await Response(body, 429, headers=headers)(scope, receive, send)
            return

        key = f"{method} {kind}"
        with self._lock:
            self.in_flight[key] += 1
            self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
        try:
            await self._forward(request, method, path, kind, fault, (who, limit) if spends_pull else None, scope,
                                receive, send)
        finally:
            with self._lock:
                self.in_flight[key] -= 1

    async def _forward(self, request: Request, method: str, path: str, kind: str, fault: Fault | None,
                       payer: tuple[str, int | None] | None, scope: dict, receive: Callable, send: Callable) -> None:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("host", self.host))  # the registry builds Location URLs from it
        url = f"{self.upstream}{path}" + (f"?{request.url.query}" if request.url.query else "")
        assert self._client is not None
        has_body = method in ("POST", "PUT", "PATCH")
        body = await request.body() if self.referrers_api and method == "PUT" and kind == "manifest" else None

        async def upload() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                await self._pace("up", len(chunk))
                with self._lock:
                    self.bytes_in += len(chunk)
                yield chunk

        upstream = await self._client.send(
            self._client.build_request(method, url, headers=headers,
                                       content=body if body is not None else upload() if has_body else None),
            stream=True,
        )
        self._record(method, path, upstream.status_code)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None and upstream.status_code == 201:
            subject = await self._index_referrer(path, body, headers)
            if subject:
                out_headers["OCI-Subject"] = subject
        if payer is not None and upstream.status_code == 200:  # a refused or failed GET is no pull
            with self._lock:
                self.spends.setdefault(payer[0], deque()).append(time.monotonic())
        if kind == "manifest":
            out_headers.update(self._ratelimit_headers(*self._who(request)))
        accepts = "gzip" in request.headers.get("accept-encoding", "")
        if fault is not None and (fault.gzip == "always" or (fault.gzip == "if-accepted" and accepts)):
            data = gzip.compress(await upstream.aread())
            await upstream.aclose()
            with self._lock:
                self.compressed += 1
            out_headers.update({"content-encoding": "gzip", "content-length": str(len(data))})
            await Response(data, upstream.status_code, headers=out_headers)(scope, receive, send)
            return

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            corrupt = fault is not None and fault.corrupt
            try:
                async for chunk in upstream.aiter_raw():
                    if corrupt and chunk:  # flip one byte of the first chunk: same size, wrong digest
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                        corrupt = False
                    if fault is not None and fault.reset_after is not None and sent + len(chunk) > fault.reset_after:
                        yield chunk[: max(fault.reset_after - sent, 0)]
                        raise ConnectionResetError("rig proxy: injected reset")
                    sent += len(chunk)
                    with self._lock:
                        self.bytes_out += len(chunk)
                    await self._pace("down", len(chunk))
                    yield chunk
            finally:
                await upstream.aclose()

        response = StreamingResponse(body(), status_code=upstream.status_code, headers=out_headers)
        await response(scope, receive, send)

    async def _pace(self, direction: str, size: int) -> None:
        """Hold a chunk until the shaped link has carried it (all connections share the bandwidth)."""
        if not self.bytes_per_second or not size:
            return
        now = time.monotonic()
        free = max(now, self._link_free[direction]) + size / self.bytes_per_second
        self._link_free[direction] = free
        if free - now > 0.001:
            await asyncio.sleep(free - now)

    async def _referrers(self, path: str, request: Request, scope: dict, receive: Callable, send: Callable) -> None:
        name, _, digest = path.removeprefix("/v2/").partition("/referrers/")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization",)}
        headers["accept"] = "application/vnd.oci.image.index.v1+json"
        assert self._client is not None
        index = await self._client.get(f"{self.upstream}/v2/{name}/manifests/{digest.replace(':', '-')}",
                                       headers=headers)
        self._record("GET", path, 200)
        body = index.content if index.status_code == 200 else json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}).encode()
        await Response(body, 200, media_type="application/vnd.oci.image.index.v1+json")(scope, receive, send)

    async def _index_referrer(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> str | None:
        """After a manifest with a subject was stored: add it to the subject's fallback index upstream."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        subject = (data.get("subject") or {}).get("digest") if isinstance(data, dict) else None
        if not subject:
            return None
        name = path.removeprefix("/v2/").rsplit("/manifests/", 1)[0]
        auth = {k: v for k, v in headers if k.lower() == "authorization"}
        accept = {"accept": "application/vnd.oci.image.index.v1+json"}
        assert self._client is not None
        tag_url = f"{self.upstream}/v2/{name}/manifests/{subject.replace(':', '-')}"
        current = await self._client.get(tag_url, headers=auth | accept)
        index = current.json() if current.status_code == 200 else {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if all(e.get("digest") != digest for e in index["manifests"]):
            entry = {"mediaType": data.get("mediaType"), "digest": digest, "size": len(body)}
            if data.get("artifactType"):
                entry["artifactType"] = data["artifactType"]
            index["manifests"].append(entry)
            await self._client.put(tag_url, content=json.dumps(index).encode(),
                                   headers=auth | {"content-type": "application/vnd.oci.image.index.v1+json"})
        return subject

    async def _tag_page(self, request: Request, path: str, scope: dict, receive: Callable, send: Callable) -> None:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        assert self._client is not None
        upstream = await self._client.get(f"{self.upstream}{path}", headers=headers)
        self._record("GET", path, upstream.status_code)
        if upstream.status_code != 200:
            await Response(upstream.content, upstream.status_code, headers=dict(upstream.headers))(scope, receive, send)
            return
        data = upstream.json()
        tags = sorted(data.get("tags") or [])
        n, last = int(request.query_params.get("n") or 100), request.query_params.get("last")
        rest = [t for t in tags if last is None or t > last]
        page = rest[:n]
        out = {"content-type": "application/json"}
        if len(rest) > n:
            out["link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
        body = json.dumps({"name": data.get("name"), "tags": page}).encode()
        await Response(body, 200, headers=out)(scope, receive, send)

    def start(self) -> Proxy:
        async def lifespan_app(scope: dict, receive: Callable, send: Callable) -> None:
            await self.app(scope, receive, send)

        config = uvicorn.Config(lifespan_app, host="127.0.0.1", port=self.port, log_level="error",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)

        def run() -> None:
            async def main() -> None:
                self._client = httpx.AsyncClient(timeout=None, follow_redirects=False)
                try:
                    await self._server.serve()  # type: ignore[union-attr]
                finally:
                    await self._client.aclose()

            asyncio.run(main())

        self._thread = threading.Thread(target=run, daemon=True, name=f"rig-proxy-{self.port}")
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            threading.Event().wait(0.05)
        raise RuntimeError("rig proxy did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
