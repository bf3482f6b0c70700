"""Errors of the registry layer. Messages carry the registry's own error code and text, never
credentials, and say what happened in the protocol's words: what to change (a flag of `dmi copy`, a key of
config.ini) is the caller's to say (dmi_provider/hints.py), from the error's type and `side`."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

from dmi_provider.errors import DmiError

MAX_HTML_SCAN = 16 * 1024


class RegistryError(DmiError):
    """A registry refused or failed a request. `retryable` tells the caller whether to try again;
    `retry_after` is the registry's own Retry-After, in seconds, when it sent one. `registry`: the host
    that answered so (set by the transport); `side` ("source" or "target"): set by the copy that met the
    error, None where nobody knows (one client alone, or source and target on one host)."""

    registry: str | None = None
    side: str | None = None
    # No answer, or a gateway's 502/503/504: the registry may be restarting. Retried for the policy's whole
    # time budget, not only its count of attempts (a routine restart takes 10 to 60 seconds).
    outage: bool = False
    spent: bool = False  # a retry loop gave up on it already: no outer loop tries again

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, url: str | None = None,
                 retryable: bool = False, retry_after: float | None = None):
        super().__init__(message, retryable=retryable)
        self.status = status
        self.code = code
        self.url = url
        self.retry_after = retry_after


class AuthError(RegistryError):
    pass


class Stalled(RegistryError):
    """A blob transfer that stopped making progress (stall-timeout): retried from zero."""

    outage = True

    def __init__(self, message: str):
        super().__init__(message, retryable=True)


class LoginNeeded(AuthError):
    """The registry wants a login and none was given."""


class RateLimited(RegistryError):
    """HTTP 429: the registry's (pull) rate limit is spent."""


class NeedsTLS(RegistryError):
    """Plain HTTP sent to a registry that speaks HTTPS. `certain`: the registry said so; else a bare 400
    only suggests it (a TLS port answers plain HTTP with 400)."""

    certain = True


class MaybeNeedsTLS(NeedsTLS):
    certain = False


class TLSUntrusted(RegistryError):
    """The registry's TLS certificate is not signed by a trusted CA."""


class MaybePlainHTTP(RegistryError):
    """A TLS handshake answered by something that is not TLS: the registry may speak plain HTTP."""


class NotFound(RegistryError):
    pass


class DigestMismatch(RegistryError):
    """Bytes whose digest or size is not what was announced. Not retryable: the source lies, and asking
    again brings the same bytes (a blob copy retries a same-size mismatch once itself, for a bad transfer)."""

    def __init__(self, message: str, url: str | None = None, *, size_ok: bool = False):
        super().__init__(message, url=url, retryable=False)
        self.size_ok = size_ok


class ManifestTooLarge(RegistryError):
    pass


class PinMoved(RegistryError):
    """A pinned source tag (`tag@digest`) now holds another digest: a supply-chain pin refuses it.
    Updating the pin is the caller's advice (a section of config.ini, a `dmi copy` argument)."""


class ManifestInvalid(RegistryError):
    """A manifest that cannot be used: not JSON, an unknown media type, a malformed descriptor.
    Not retryable: the same bytes come back next time."""


class InsecureRedirect(RegistryError):
    pass


def html_summary(body: bytes) -> str:
    """'an HTML page titled "…"' for a body that is a web page (a captive portal, a proxy, a wrong host)."""
    found = re.search(rb"<title[^>]*>(.*?)</title>", body[:MAX_HTML_SCAN], re.I | re.S)
    title = " ".join(found.group(1).decode(errors="replace").split())[:80] if found else ""
    return f"an HTML page titled {title!r}" if title else "an HTML page"


def looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head


def registry_error_text(body: bytes) -> tuple[str | None, str]:
    """(code, message) from a distribution error body {"errors": [{"code", "message", "detail"}]}."""
    if looks_like_html(body):
        return None, html_summary(body)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        text = body[:200].decode(errors="replace").strip()
        return None, text
    errors = data.get("errors") if isinstance(data, dict) else None
    if not errors or not isinstance(errors, list):
        if isinstance(data, dict) and data.get("details"):
            return None, str(data["details"])[:300]
        return None, ""
    first = errors[0] if isinstance(errors[0], dict) else {}
    code = first.get("code")
    message = str(first.get("message") or "")
    detail = first.get("detail")
    if detail and not isinstance(detail, (dict, list)):
        message = f"{message} ({detail})" if message else str(detail)
    return (str(code) if code else None), message[:500]


@contextlib.contextmanager
def sides(src: str | None, dst: str) -> Iterator[None]:
    """Errors leave a copy saying which side they met: the registry's host tells, unless both are one."""
    try:
        yield
    except RegistryError as error:
        if error.side is None and error.registry and src != dst:
            error.side = ("source" if error.registry == src else "target" if error.registry == dst else None)
        raise
