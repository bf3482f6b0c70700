"""The bottom of the transport: one request out and its answer back, redirects followed by hand so that
Authorization never goes to another host and https never downgrades; bodies read only this far."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urljoin, urlsplit

import httpx

from dmi_provider.registry.errors import InsecureRedirect, RegistryError

MAX_ERROR_BODY = 64 * 1024  # error bodies are read this far (the message is at the start)
CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
Body = bytes | Iterable[bytes] | None


def loads(raw: bytes | str) -> Any:
    """json.loads, with JSON nested too deeply for Python reported as the ValueError it is: a RecursionError
    would be taken for a crash and retried (each retry of a manifest another pull)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


SHOWN_PARAMS = ("n", "last", "digest", "mount", "from")  # what a query may show in a message


def shown_url(url: str) -> str:
    """A URL as messages, logs and the UI show it: an upload Location's `_state=` token, a CDN's signature
    (any query parameter but the API's own few) replaced by "…"."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k in SHOWN_PARAMS]
    query = urlencode(kept, safe=":/") + ("&…" if kept and len(kept) < len(pairs) else "" if kept else "…")
    return parts._replace(query=query, fragment="").geturl()


def read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of a streamed body (decoded), then the connection is let go."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= limit:
                break
    except httpx.HTTPError as exc:  # the answer broke off mid-body (or its compression did): worth another try
        error = RegistryError(f"{response.request.method} {shown_url(str(response.url))}: the answer broke off "
                              f"({type(exc).__name__}: {exc})", url=shown_url(str(response.url)), retryable=True)
        error.outage = isinstance(exc, httpx.TransportError)
        raise error from None
    finally:
        response.close()
    return bytes(body[:limit])


def buffered(response: httpx.Response) -> httpx.Response:
    """A streamed response with its body read, at most MAX_ERROR_BODY bytes of it (errors, HEADs, PUTs)."""
    body = read_capped(response, MAX_ERROR_BODY)
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


def body_chunks(response: httpx.Response, size: int | None = CHUNK) -> Iterator[bytes]:
    """The body as the registry stored it: raw, unless a proxy compressed it on the way anyway. `size` None:
    each chunk as the network hands it over (what a stall timer needs to see)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.iter_raw(size) if encoding in ("", "identity") else response.iter_bytes(size)


def is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() in ("text/html",
                                                                                      "application/xhtml+xml")


def origin(url: SplitResult) -> tuple[str, int | None]:
    """Host and port, the default port spelled out (`https://r.io` is `https://r.io:443`)."""
    return (url.hostname or "").lower(), url.port or {"https": 443, "http": 80}.get(url.scheme)


def kind(path: str) -> str:
    """What a request is about, for counting ("HEAD manifest", "GET blob", ...)."""
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


def send(http: httpx.Client, method: str, url: str, headers: dict[str, str], content: Body,
         stream: bool) -> httpx.Response:
    """Send once, following the redirects of a GET or HEAD: Authorization is dropped on the way to another
    host, a redirect from https to http is refused. A body is kept only with `stream`."""
    for _ in range(MAX_REDIRECTS + 1):
        response = http.send(http.build_request(method, url, headers=headers, content=content), stream=True)
        if response.status_code not in REDIRECTS or method not in ("GET", "HEAD"):
            return response if stream else buffered(response)
        location = response.headers.get("location")
        response.close()
        if not location:
            return response
        target = urljoin(url, location)
        old, new = urlsplit(url), urlsplit(target)
        if old.scheme == "https" and new.scheme != "https":
            raise InsecureRedirect(f"{method} {shown_url(url)}: refusing a redirect from https to {new.scheme}")
        if new.netloc != old.netloc:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
    raise RegistryError(f"{method} {shown_url(url)}: too many redirects", url=shown_url(url))
