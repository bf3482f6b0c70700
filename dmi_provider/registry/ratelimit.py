"""What a registry says about its limits: Docker Hub's `ratelimit-*` headers and `Retry-After`; and the HEAD
pace of hosts known to throttle HEADs."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.ini's checks and the CLI's start import this module, not httpx
    import httpx


MAX_WINDOW = 31 * 24 * 3600  # seconds: longer is not a pull window (and would overflow a timedelta)


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
            if found:  # a window a registry may announce as anything: kept between a second and a month
                window = min(max(int(found.group(1)), 1), MAX_WINDOW)
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


class HeadPacer:
    """Keeps HEAD requests to one host under a limit it is known to enforce: at most `limit` in any `window`
    seconds, across the threads of a process (a planning task HEADs hundreds of images at once). Docker Hub
    counts no HEAD as a pull, but throttles clients that send very many (regclient #711, ocync's findings)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for messages and tests

    def wait(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                delay = self.window - (now - self._sent[0])
                self.waited += delay
            self._sleep(delay)


# Hosts known to throttle HEADs, and how hard: (HEADs, seconds). Docker Hub publishes no figure; ocync reports
# trouble from about 300 in a few minutes per IP, so DMI stays at 250 in 5 minutes per process.
HEAD_LIMITS: dict[str, tuple[int, float]] = {"docker.io": (250, 300.0)}
_pacers: dict[str, HeadPacer] = {}
_pacers_lock = threading.Lock()


def head_pacer(registry: str) -> HeadPacer | None:
    """The process's pacer for a host with a known HEAD limit, else None."""
    if registry not in HEAD_LIMITS:
        return None
    with _pacers_lock:
        if registry not in _pacers:
            _pacers[registry] = HeadPacer(*HEAD_LIMITS[registry])
        return _pacers[registry]
