"""Blob locations and leases a fleet shares through the tracking database (PostgreSQL, started by the
suite): one writer per blob, the others wait and then find it; a dead worker's lease runs out; upload
slots per registry; an unreachable database never fails a copy, and the limits come back with it. The
Celery system test runs the same across two real workers (tests/system/test_fleet.py)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, insert, select

from dmi_provider.tracking import fleet
from dmi_provider.tracking.fleet import SharedBlobLocations
from dmi_provider.tracking.models import Lease

REG, DIGEST = "registry.example:5000", "sha256:" + "ab" * 32


@pytest.fixture
def url(postgres, request):
    return postgres.database(f"fleet_{request.node.name[:40].lower()}")


def test_one_writer_per_blob_the_other_waits_and_then_finds_it(url):
    first, second = SharedBlobLocations(url), SharedBlobLocations(url)
    events: list[str] = []
    said: list[str] = []
    second.say = said.append

    def later() -> None:
        with second.writing(REG, DIGEST, "team/b") as waited:
            events.append(f"second writes, waited={waited}, holders={sorted(second.holders(REG, DIGEST))}")

    with first.writing(REG, DIGEST, "team/a") as waited:
        assert waited is False
        thread = threading.Thread(target=later)
        thread.start()
        time.sleep(1.5)  # the second one polls meanwhile
        events.append("first wrote")
        first.add(REG, DIGEST, "team/a")
    thread.join(10)
    assert events == ["first wrote", "second writes, waited=True, holders=['team/a']"]
    assert said == [f"  blob {DIGEST[:19]} is being written to team/a by another worker: waiting for it"]
    for store in (first, second):
        store.close()
    with create_engine(url).connect() as c:
        assert c.execute(select(Lease)).all() == []  # released


def test_a_dead_workers_lease_runs_out_and_is_taken_over(url, monkeypatch):
    monkeypatch.setattr(fleet, "LEASE", 2.0)
    alive = SharedBlobLocations(url)
    alive.holders(REG, DIGEST)  # creates the tables
    with create_engine(url).begin() as c:  # a lease of a worker killed a moment ago: never renewed
        c.execute(insert(Lease).values(key=f"blob {REG} {DIGEST}", owner="dead", holder="team/dead",
                                       expires_at=time.time() + 1.0))
    with alive.writing(REG, DIGEST, "team/alive") as waited:
        assert waited is True
        with create_engine(url).connect() as c:
            (owner, holder), = c.execute(select(Lease.owner, Lease.holder)).all()
        assert (owner, holder) == (alive.owner, "team/alive")
    alive.close()


def test_a_held_lease_is_renewed_while_its_writer_works(url, monkeypatch):
    monkeypatch.setattr(fleet, "LEASE", 1.5)  # renewed every 0.5 s
    writer, other = SharedBlobLocations(url), SharedBlobLocations(url)
    with writer.writing(REG, DIGEST, "team/a"):
        time.sleep(3.5)  # more than two leases long
        assert other._take(f"blob {REG} {DIGEST}", "team/b") == "team/a"  # still held: not stolen
    assert other._take(f"blob {REG} {DIGEST}", "team/b") is None
    writer.close()
    other.close()


def test_upload_slots_bound_uploads_per_registry_across_workers(url):
    workers = [SharedBlobLocations(url, upload_limit=2) for _ in range(5)]
    lock, now, peak = threading.Lock(), [0], [0]

    def upload(store: SharedBlobLocations) -> None:
        with store.uploading(REG):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.4)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=upload, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == 2
    with workers[0].uploading("other.example"):  # another registry has slots of its own
        pass
    for w in workers:
        w.close()


def test_a_writer_stuck_too_long_is_not_waited_for_forever(url, monkeypatch):
    monkeypatch.setattr(fleet, "WAIT_LIMIT", 1.5)
    stuck, other = SharedBlobLocations(url), SharedBlobLocations(url)
    said: list[str] = []
    other.say = said.append
    with stuck.writing(REG, DIGEST, "team/stuck"), other.writing(REG, DIGEST, "team/b") as waited:
        assert waited is True  # copies it too, rather than waiting on a live lease that never ends
    assert said[-1] == f"  blob {DIGEST[:19]}: team/stuck's writer has held it for 2s: copying it too"
    stuck.close()
    other.close()


def test_limits_come_back_when_the_database_does(postgres, monkeypatch, caplog):
    now = [1000.0]  # the back-off's clock, moved by hand
    monkeypatch.setattr(fleet, "time", SimpleNamespace(time=time.time, sleep=time.sleep, monotonic=lambda: now[0]))
    url = postgres.url.rsplit("/", 1)[0] + "/fleet_later"  # no such database yet
    first, second = SharedBlobLocations(url), SharedBlobLocations(url)
    assert first._take(f"blob {REG} {DIGEST}", "team/a") is None  # limits off: taken, as if alone
    postgres.database("fleet_later")
    now[0] += 5  # the back-off's first step
    assert first._take(f"blob {REG} {DIGEST}", "team/a") is None
    assert second._take(f"blob {REG} {DIGEST}", "team/b") == "team/a"  # a real lease: limits on again
    assert "shared blob locations unavailable (OperationalError)" in caplog.text
    assert postgres.password not in caplog.text
    for store in (first, second):
        store.close()
