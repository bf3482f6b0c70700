"""Docker Hub's pull limit as a budget. Plain Python: no Airflow import here.

A registry that sends `ratelimit-limit: L;w=W` and `ratelimit-remaining: R` (on HEADs too, which cost
nothing) counts each manifest GET as a pull. Before each GET the copier asks the budget whether the
pulls it is about to spend fit in what remains minus the reserve kept for the rest of the machines
sharing the IP. When they do not, PullsShort says how long to wait; the pull task defers that long
instead of spending into 429s. No headers means no limit: nothing is ever held back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from dmi_provider.errors import DmiError
from dmi_provider.registry.ratelimit import RateLimit

DEFAULT_WINDOW = 21600  # Docker Hub's documented 6 hours, when a registry sends no `w=`
MIN_WAIT = 1.0


def window_text(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class PullsShort(DmiError):
    """The pulls a copy needs do not fit in what remains (minus the reserve) now. `wait` is how long until
    the window has likely freed enough; `fetched` holds the manifests already paid for (digest ->
    (media type, raw bytes)), so that the resumed task does not pay for them twice."""

    retryable = True

    def __init__(self, registry: str, needed: int, limit: RateLimit, reserve: int, wait: float,
                 claimed: bool = False):
        window = limit.window or DEFAULT_WINDOW
        source = f" (counted for {limit.source})" if limit.source else ""
        others = ", some of them claimed by other tasks already" if claimed else ""
        super().__init__(f"{registry}: {needed} pull{'s' if needed != 1 else ''} needed, {limit.remaining} of "
                         f"{limit.limit} left in its {window_text(window)} window{source}{others} and {reserve} kept "
                         "in reserve")
        self.registry, self.needed, self.limit, self.reserve, self.wait = registry, needed, limit, reserve, wait
        self.fetched: dict[str, tuple[str, bytes]] = {}


class PullsNeverFit(DmiError):
    """More pulls than the limit allows even when the whole window is free: waiting cannot help."""


class Ledger(Protocol):
    """Pulls claimed by every task that talks to a source (the tracking database: shared by all workers).
    Returns 0 when `needed` pulls were claimed, else the seconds to wait."""

    def __call__(self, key: str, needed: int, limit: RateLimit, reserve: int) -> float: ...


@dataclass(frozen=True)
class PullBudget:
    """`reserve_percent` of the registry's limit is never spent (pull-reserve). With a `ledger`, tasks
    running at once claim their pulls there, so that two of them never spend the same remaining pull."""

    reserve_percent: float = 10.0
    ledger: Ledger | None = None

    def reserve(self, limit: int) -> int:
        return math.ceil(limit * self.reserve_percent / 100)

    def check(self, registry: str, limit: RateLimit | None, needed: int) -> None:
        """Raise PullsShort unless `needed` pulls fit now. A registry without limit headers always fits."""
        if needed <= 0 or limit is None or limit.limit is None or limit.remaining is None:
            return
        reserve = self.reserve(limit.limit)
        if needed > limit.limit - reserve:
            raise PullsNeverFit(f"{registry}: {needed} pulls needed, more than its limit of {limit.limit} minus the "
                                f"reserve of {reserve}")
        if self.ledger is not None:
            wait = self.ledger(f"{registry}|{limit.source or ''}", needed, limit, reserve)
            if wait > 0:
                raise PullsShort(registry, needed, limit, reserve, wait,
                                 claimed=limit.remaining - needed >= reserve)
        elif limit.remaining - needed < reserve:
            raise PullsShort(registry, needed, limit, reserve, wait_for(needed, limit, reserve))


def wait_for(needed: int, limit: RateLimit, reserve: int) -> float:
    """Seconds until `needed` pulls above the reserve are likely free again. Docker Hub does not say when
    pulls come back; spread evenly over the window, a limit of L frees one pull every W / L seconds."""
    assert limit.limit and limit.remaining is not None
    window = limit.window or DEFAULT_WINDOW
    deficit = needed + reserve - limit.remaining
    return min(max(deficit * window / limit.limit, MIN_WAIT), float(window))
