"""Leases run on the database's clock, not each worker's (PostgreSQL, started by the suite): a worker whose
own clock is minutes off neither takes a lease another worker holds, nor keeps a dead worker's lease alive
for those minutes."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from dmi_provider.tracking import fleet
from dmi_provider.tracking.fleet import SharedBlobLocations

REG, DIGEST = "registry.example:5000", "sha256:" + "cd" * 32
KEY, SLOT = f"blob {REG} {DIGEST}", f"upload {REG} 0"
SKEWS = [120.0, -120.0]  # far beyond a lease (30 s)


@pytest.fixture
def url(postgres, request):
    name = re.sub(r"\W+", "_", request.node.name.lower().replace("-", "minus"))
    return postgres.database(f"clock_{name[-50:]}")  # the tail keeps the parameter: one database each


@contextlib.contextmanager
def clock_off_by(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    """The process clock, as the fleet module reads it, `seconds` off (a worker host without NTP). It is one
    module for every store of this process: only the skewed worker's calls run inside."""
    skewed = SimpleNamespace(time=lambda: time.time() + seconds, monotonic=time.monotonic, sleep=time.sleep)
    with monkeypatch.context() as m:
        m.setattr(fleet, "time", skewed)
        yield


@pytest.mark.parametrize("skew", SKEWS)
def test_a_worker_with_a_skewed_clock_takes_no_live_lease(url, monkeypatch, skew):
    normal, skewed = SharedBlobLocations(url, upload_limit=1), SharedBlobLocations(url, upload_limit=1)
    assert normal._take(KEY, "team/normal") is None
    with clock_off_by(monkeypatch, skew):
        assert skewed._take(KEY, "team/skewed") == "team/normal"  # the skewed one waits
    with normal.uploading(REG), clock_off_by(monkeypatch, skew):
        assert skewed._take(SLOT, "skewed-host") == normal.host  # the only upload slot stays taken
    normal._release(KEY)
    with clock_off_by(monkeypatch, skew):
        assert skewed._take(KEY, "team/skewed") is None
    assert normal._take(KEY, "team/normal") == "team/skewed"  # and the other way round
    for store in (normal, skewed):
        store.close()


@pytest.mark.parametrize("skew", SKEWS)
def test_a_skewed_writers_renewals_keep_its_lease(url, monkeypatch, skew):
    monkeypatch.setattr(fleet, "LEASE", 1.5)  # renewed every 0.5 s
    skewed, other = SharedBlobLocations(url), SharedBlobLocations(url)
    other.holders(REG, DIGEST)  # connected, tables there: its take below is quick
    with clock_off_by(monkeypatch, skew):
        assert skewed._take(KEY, "team/skewed") is None
        time.sleep(3.5)  # more than two leases long, renewed by the skewed renewer
        skewed._stop.set()  # no renewal after the clock is back: the last one was the skewed one's
        assert skewed._renewer is not None
        skewed._renewer.join(10)
    assert other._take(KEY, "team/other") == "team/skewed"
    for store in (skewed, other):
        store.close()


@pytest.mark.parametrize("skew", SKEWS)
def test_a_dead_skewed_workers_lease_still_runs_out(url, monkeypatch, skew):
    monkeypatch.setattr(fleet, "LEASE", 2.0)
    dead, other = SharedBlobLocations(url), SharedBlobLocations(url)
    with clock_off_by(monkeypatch, skew):
        assert dead._take(KEY, "team/dead") is None
    dead._stop.set()  # it dies: no more renewals
    assert other._take(KEY, "team/other") == "team/dead"  # live a moment ago
    taken = False
    for _ in range(40):  # a few leases long, nowhere near the skew
        taken = other._take(KEY, "team/other") is None
        if taken:
            break
        time.sleep(0.25)
    assert taken
    for store in (dead, other):
        store.close()
