"""What a registry says about its limits: Docker Hub's `ratelimit-*` headers and `Retry-After`."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.ini's checks and the CLI's start import this module, not httpx
    import httpx


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


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number or an HTTP date), None without one."""
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


def limit_text(response: httpx.Response) -> str:
    """' (0 of 100 left)' from the answer's own rate-limit headers (an earlier reading may be stale)."""
    limit = RateLimit.from_headers(response.headers)
    if limit is None or limit.limit is None:
        return ""
    return f" ({limit.remaining if limit.remaining is not None else '?'} of {limit.limit} left)"
