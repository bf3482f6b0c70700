"""Docker Hub's pull limit as a budget, through real DAG runs (`dag.test()`, which runs each deferred
task's trigger in process): the rig's Hub stand-in counts pulls per IP or per user in a short sliding
window; DMI spends them only as far as the reserve allows, defers, and resumes by itself."""

from __future__ import annotations

import itertools

import pytest

from dmi_provider.registry.budget import PullBudget, PullsNeverFit, PullsShort, wait_for
from dmi_provider.registry.client import RateLimit

WINDOW = 8  # seconds: a pull spent comes back this long after
_ns = itertools.count(1)


def test_the_budget_arithmetic():
    budget = PullBudget(10)
    budget.check("r", None, 5)  # no headers: no limit
    budget.check("r", RateLimit(100, 20, 21600), 10)  # 20 - 10 >= 10
    with pytest.raises(PullsShort) as short:
        budget.check("r", RateLimit(100, 15, 21600, "192.0.2.1"), 6)
    assert str(short.value) == ("r: 6 pulls needed, 15 of 100 left in its 6h window (counted for 192.0.2.1) and 10 "
                                "kept in reserve")
    assert short.value.wait == 216.0  # 1 pull short; spread over the window, one comes back every 216 s
    assert wait_for(50, RateLimit(100, 0, 3600), 10) == 2160.0
    assert wait_for(200, RateLimit(100, 0, 3600), 0) == 3600.0  # never more than one window
    with pytest.raises(PullsNeverFit, match="101 pulls needed, more than its limit of 100 minus the reserve of 0"):
        PullBudget(0).check("r", RateLimit(100, 0, 60), 101)

def test_the_ledger_claims_and_an_unreachable_ledger_falls_back_to_the_headers(tmp_path):
    import time

    from dmi_provider import pipeline
    from tests.rig.process import free_port

    ledger = pipeline.pull_ledger(f"sqlite:///{tmp_path / 't.db'}")
    seen = RateLimit(10, 3, 60, "192.0.2.1", time.time())
    assert ledger("r|192.0.2.1", 2, seen, 0) == 0.0  # claimed: 2 of the 3
    assert ledger("r|192.0.2.1", 2, seen, 0) > 0  # the same reading cannot pay twice: wait
    assert ledger("other|192.0.2.1", 2, seen, 0) == 0.0  # another registry's budget is its own
    gone = pipeline.pull_ledger(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none")
    assert gone("r|x", 2, seen, 0) == 0.0  # no ledger: 3 - 2 >= 0 by the headers alone
    assert gone("r|x", 3, seen, 1) == 6.0  # 1 short: one pull frees every 60 / 10 s


def test_heads_to_a_host_that_throttles_them_are_paced_under_its_limit():
    from dmi_provider.registry.ratelimit import HEAD_LIMITS, HeadPacer, head_pacer

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = HeadPacer(3, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()  # within the limit: no wait
    assert slept == []
    now[0] = 10.0
    pacer.wait()  # the fourth waits until the first leaves the window
    assert slept == [50.0] and pacer.waited == 50.0
    assert head_pacer("docker.io") is head_pacer("docker.io") and HEAD_LIMITS["docker.io"][0] < 300
    assert head_pacer("registry.local:5000") is None  # no known limit: HEADs as fast as they go


def test_one_sources_short_window_prunes_only_its_own_claims(tmp_path):
    import time
    from datetime import UTC, datetime, timedelta

    import httpx
    from sqlalchemy.orm import Session

    from dmi_provider.tracking.models import PullClaim
    from dmi_provider.tracking.store import SeenLimit, TrackingStore, claim_pulls

    store = TrackingStore(f"sqlite:///{tmp_path / 't.db'}")
    store.migrate()
    with Session(store.engine) as session, session.begin():  # Docker Hub's claims of ten seconds ago
        session.add(PullClaim(key="docker.io|ip", claimed_at=datetime.now(UTC) - timedelta(seconds=10), pulls=90))
    # A registry announcing a one-second window claims: Docker Hub's claims stay (its window is 6 hours).
    assert claim_pulls(store, "tiny|ip", 1, SeenLimit(5, time.time(), 5, 1), 0) == 0.0
    seen = SeenLimit(100, time.time() - 60, 100, 21600)  # headers read before those 90 were claimed
    assert claim_pulls(store, "docker.io|ip", 20, seen, 0) > 0  # 100 - 90 < 20: wait, not 120 granted
    # A window of 10**12 seconds is clamped (it used to raise OverflowError).
    limit = RateLimit.from_headers(httpx.Headers({"ratelimit-limit": "5;w=1000000000000",
                                                  "ratelimit-remaining": "5;w=1000000000000"}))
    assert limit is not None and limit.window == 31 * 24 * 3600
    assert claim_pulls(store, "huge|ip", 1, SeenLimit(5, time.time(), 5, 10**12), 0) == 0.0
    store.close()
