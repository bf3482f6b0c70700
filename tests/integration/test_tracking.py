"""The tracking tables on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from dmi_provider.errors import DmiError
from dmi_provider.tracking.store import MirrorOutcome, TrackingStore
from tests.unit.test_tracking import outcome


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracking.db'}"
    else:
        url = request.getfixturevalue("postgres").database(f"tracking_{request.node.name.split('[')[0][5:30]}")
    store = TrackingStore(url)
    yield store
    store.close()




def test_history_and_state(store):
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    store.record(outcome("copied", d1, "r1", bytes_transferred=100, blobs_copied=3,
                         logical_date=datetime(2026, 1, 1, tzinfo=UTC)))
    first = store.state()[0]
    assert first["last_digest"] == d1 and first["first_mirrored"] == first["last_changed"]
    time.sleep(0.01)
    store.record(outcome("unchanged", d1, "r2"))
    after_unchanged = store.state()[0]
    assert after_unchanged["last_changed"] == first["last_changed"]
    assert after_unchanged["last_checked"] > first["last_checked"]
    store.record(outcome("failed", None, "r3", error="HTTP 404 MANIFEST_UNKNOWN"))
    failed = store.state()[0]
    assert failed["last_status"] == "failed" and failed["last_digest"] == d1  # a failure keeps the last digest
    time.sleep(0.01)
    store.record(outcome("copied", d2, "r4"))
    store.record(outcome("dry-run", d2, "r5"))
    state = store.state()
    assert len(state) == 1
    assert state[0]["last_digest"] == d2 and state[0]["last_changed"] > first["last_changed"]
    assert state[0]["first_mirrored"] == first["first_mirrored"]
    assert state[0]["last_status"] == "copied"  # a dry run changes no state

    rows = store.history()
    assert [r["run_id"] for r in rows] == ["r5", "r4", "r3", "r2", "r1"]
    assert rows[-1]["logical_date"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert rows[-1]["bytes_transferred"] == 100 and rows[-1]["blobs_copied"] == 3
    assert [r["run_id"] for r in store.history(status="failed")] == ["r3"]
    assert store.history(image="proxyv2", limit=2)[0]["run_id"] == "r5"
    assert store.history(image="nothing-like-it") == []
    assert store.history(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert [t["digest"] for t in store.timeline("ecr/istio/proxyv2:1.7.0")] == [d1, d2]
    assert store.timeline("ecr/istio/proxyv2:1.7.0")[0]["runs"] == 2


def test_bad_status_is_refused(store):
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        store.record(outcome("done", None, "r1"))
    assert store.history() == []


# -- the security review's findings ---------------------------------------------------------------------
RECORD_AT_ONCE = ("import sys, threading; from dmi_provider.tracking.store import *; "
                  "s = TrackingStore(sys.argv[1]); "
                  "s.record(MirrorOutcome('d', 'r', 's', 'src', f't{sys.argv[2]}', 'copied', target_digest='x'))")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_creating_the_tables_is_safe_when_many_record_at_once(kind, tmp_path, request):
    """Parallel record tasks on a fresh deployment: each process finds no table and creates them."""
    for round_ in range(5):
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'fresh{round_}.db'}"
        else:
            url = request.getfixturevalue("postgres").database(f"fresh_{round_}")
        procs = [subprocess.Popen([sys.executable, "-c", RECORD_AT_ONCE, url, str(n)], stderr=subprocess.PIPE)
                 for n in range(4)]
        codes = [p.wait(120) for p in procs]
        assert codes == [0, 0, 0, 0], [p.stderr.read().decode()[-800:] for p in procs if p.returncode]
        store = TrackingStore(url)
        assert len(store.history()) == 4
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM dmi_schema").scalar() == 1
        store.close()


def test_a_retried_record_writes_no_duplicate(store):
    store.record(outcome("failed", None, "r1", error="boom"))
    store.record(outcome("copied", "sha256:" + "1" * 64, "r1"))  # the record task's retry, same run
    store.record(outcome("copied", "sha256:" + "1" * 64, "r2"))
    rows = store.history()
    assert [(r["run_id"], r["status"]) for r in rows] == [("r2", "copied"), ("r1", "copied")]


def test_history_filters_run_in_sql_before_the_limit(store):
    for n in range(30):
        store.record(outcome("copied", "sha256:" + "1" * 64, f"busy{n}", target="ecr/a:1"))
    other = outcome("copied", "sha256:" + "2" * 64, "quiet", target="ecr/a:10")
    other.dag_id = "dmi_mirror_1d"
    store.record(other)
    for n in range(30):
        store.record(outcome("copied", "sha256:" + "1" * 64, f"late{n}", target="ecr/a:1"))
    assert [r["run_id"] for r in store.history(dag_id="dmi_mirror_1d", limit=10)] == ["quiet"]
    assert [r["run_id"] for r in store.history(target="ecr/a:10", limit=10)] == ["quiet"]  # exact, not LIKE
    assert {r["dag_id"] for r in store.history(dag_ids={"dmi_mirror"}, limit=100)} == {"dmi_mirror"}
    assert store.state(dag_ids=set()) == [] and len(store.state(dag_ids={"dmi_mirror_1d"})) == 1


def test_recent_runs_totals_and_runs_for_the_charts(store):
    """What the Image mirror charts are drawn from, on SQLite and PostgreSQL: each target's latest runs
    (a window function), the totals, and per DAG run the images copied, unchanged and failed."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(25):  # 25 runs of one image: the strip keeps the latest 20, oldest first
        status = "failed" if n == 22 else "copied" if n % 10 == 0 else "unchanged"
        store.record(outcome(status, None if status == "failed" else "sha256:a", f"run_{n:02d}",
                             bytes_transferred=1000 if status == "copied" else 0,
                             finished_at=start + timedelta(hours=n)))
    store.record(outcome("copied", "sha256:b", "run_24", target="ecr/istio/pilot:1.7.0", bytes_transferred=5,
                         finished_at=start + timedelta(hours=24)))
    recent = store.recent(per_target=20)
    mine = recent["ecr/istio/proxyv2:1.7.0"]
    assert [r["run_id"] for r in mine] == [f"run_{n:02d}" for n in range(5, 25)]
    assert [r["status"] for r in mine].count("failed") == 1 and mine[-1]["status"] == "unchanged"
    assert [r["run_id"] for r in recent["ecr/istio/pilot:1.7.0"]] == ["run_24"]
    assert store.recent(dag_ids=["other"]) == {}
    assert store.totals() == {"bytes": 3 * 1000 + 5, "copies": 4}
    runs = store.runs(limit=3)
    assert [(r["run_id"], r["copied"], r["unchanged"], r["failed"]) for r in runs] == [
        ("run_22", 0, 0, 1), ("run_23", 0, 1, 0), ("run_24", 1, 1, 0)]
    assert runs[-1]["bytes"] == 5 and store.runs(dag_id="other") == []


def test_history_pages_render_from_sqlite(tmp_path):
    """The UI plugin's pages on a SQLite tracking database (the stack test covers PostgreSQL and auth):
    escaped, filtered in SQL, and only rows of the DAGs the user may read."""
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    store = TrackingStore(url)
    store.record(MirrorOutcome("dmi_mirror", "manual__1", "alpine", "docker.io/library/alpine:3.20",
                               "ecr.example/mirror/alpine:3.20", "copied", target_digest="sha256:" + "c" * 64))
    store.record(MirrorOutcome("dmi_mirror", "manual__2", "alpine", "docker.io/library/alpine:3.20",
                               "ecr.example/mirror/alpine:3.20", "failed", error="HTTP 404 <b>gone</b>"))
    store.record(MirrorOutcome("secret_dag", "manual__9", "hidden", "docker.io/team/secret:1",
                               "ecr.example/team/secret:1", "failed", error="secret error text"))
    code = (
        "import asyncio\n"
        "from dmi_provider.plugins import history as h, query as q\n"
        "q.readable_dags = lambda user: {'dmi_mirror'}  # what the auth manager would say for this user\n"
        "q.triggerable = lambda user, dag_ids: set()\n"
        "q.failed_task_links = lambda rows: {}  # Airflow's task instances: the stack test\n"
        "for page in (h.state_page(None, h.StateAsk()), h.history_page(None, h.HistoryAsk(status='failed', limit=10)),"
        " h.image_page(None, target='ecr.example/mirror/alpine:3.20'),"
        " h.history_page(None, h.HistoryAsk(dag_id='secret_dag', limit=10)),"
        " h.image_page(None, target='ecr.example/team/secret:1')):\n"
        "    print(asyncio.run(page).body.decode())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "home"),
           "AIRFLOW_CONN_DMI_TRACKING": url}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    state, failed, image, secret_history, secret_image = done.stdout.split("<!doctype html>")[1:]
    assert "ecr.example/mirror/alpine:3.20" in state and "sha256:" + "c" * 64 in state
    assert 'href="../dags/dmi_mirror/runs/manual__2"' in state  # the last run links to the DAG run
    assert "HTTP 404 &lt;b&gt;gone&lt;/b&gt;" in failed and "manual__1" not in failed  # escaped, filtered
    assert image.count("sha256:" + "c" * 64) >= 1 and "<h2>Digests</h2>" in image
    assert "secret" not in state + failed and "secret error text" not in secret_history + secret_image
    assert "No history matches" in secret_history and "No runs on record" in secret_image

    empty = tmp_path / "empty.db"
    env["AIRFLOW_CONN_DMI_TRACKING"] = f"sqlite:///{empty}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "No image has been mirrored yet." in done.stdout
    assert TrackingStore(f"sqlite:///{empty}", read_only=True).engine.connect().exec_driver_sql(
        "SELECT count(*) FROM sqlite_master").scalar() == 0  # the UI created no table


# -- issue 26, also-close: retention ---------------------------------------------------------------------------
D1, D2, D3, D4 = ("sha256:" + c * 64 for c in "1234")


def old_rows(store, now: datetime) -> None:
    """History that only grew, blob hints, leases and pull claims, some old and some recent."""
    from sqlalchemy import insert

    from dmi_provider.tracking.models import BlobLocation, Lease, PullClaim

    def at(days: float, status: str, digest: str | None, target: str, run: str | None = None):
        store.record(outcome(status, digest, run or f"{target[-1]}{days}", target=target,
                             finished_at=now - timedelta(days=days)))

    # a: its digest since 500 days, checked daily: the first row of the digest and every recent one stay
    for days in (500, 450, 420, 2, 1):
        at(days, "copied" if days == 500 else "unchanged", D1, "ecr/a")
    # b: not checked for 500 days (a long refresh): its latest row, latest good row, and since-when row stay
    for days, status, digest in ((700, "copied", D2), (650, "unchanged", D2), (600, "unchanged", D2),
                                 (500, "failed", None)):
        at(days, status, digest, "ecr/b")
    # c: a new digest 10 days ago; the old digest's rows go
    for days, status, digest in ((900, "copied", D3), (800, "unchanged", D3), (10, "copied", D4)):
        at(days, status, digest, "ecr/c")
    epoch = now.timestamp()
    with store.engine.begin() as conn:
        conn.execute(insert(BlobLocation), [
            {"registry": "reg", "digest": D1, "repository": "old", "seen": epoch - 31 * 86400},
            {"registry": "reg", "digest": D1, "repository": "new", "seen": epoch - 29 * 86400}])
        conn.execute(insert(Lease), [
            {"key": "blob dead", "owner": "w1", "holder": "r", "expires_at": epoch - 7200},
            {"key": "blob just-expired", "owner": "w2", "holder": "r", "expires_at": epoch - 600},
            {"key": "blob live", "owner": "w3", "holder": "r", "expires_at": epoch + 30}])
        conn.execute(insert(PullClaim), [
            {"key": "hub|ip", "claimed_at": now - timedelta(days=40), "pulls": 1},
            {"key": "hub|ip", "claimed_at": now - timedelta(days=1), "pulls": 1}])


def remaining(store) -> dict[str, list]:
    from sqlalchemy import select

    from dmi_provider.tracking.models import BlobLocation, Lease, PullClaim

    with store.engine.connect() as conn:
        return {"history": sorted(r["run_id"] for r in store.history(limit=100)),
                "locations": conn.execute(select(BlobLocation.repository)).scalars().all(),
                "leases": sorted(conn.execute(select(Lease.key)).scalars().all()),
                "claims": len(conn.execute(select(PullClaim.id)).scalars().all())}


KEPT = {"history": ["a1", "a2", "a500", "b500", "b600", "b700", "c10"], "locations": ["new"],
        "leases": ["blob just-expired", "blob live"], "claims": 1}
DELETED = {"dmi_mirror_history": 5, "dmi_blob_locations": 1, "dmi_leases": 1, "dmi_pull_claims": 1}


def test_prune_deletes_only_what_is_old_and_keeps_each_targets_latest_and_since_when(store):
    now = datetime.now(UTC)
    old_rows(store, now)
    before = remaining(store)
    assert store.prune(dry_run=True) == DELETED  # the defaults: 400 days of history, hints seen in 30 days
    assert remaining(store) == before
    assert store.prune() == DELETED
    assert remaining(store) == KEPT
    assert store.prune() == dict.fromkeys(DELETED, 0)
    timeline = store.timeline("ecr/a")  # since when ecr/a has had its digest survives
    assert [(t["digest"], t["first_seen"].date()) for t in timeline] == [(D1, (now - timedelta(days=500)).date())]
    assert store.last_good("ecr/b")["run_id"] == "b600"  # what the docker engine compares with
    assert {s["target"]: s["last_digest"] for s in store.state()} == {"ecr/a": D1, "ecr/b": D2, "ecr/c": D4}


def test_retention_comes_from_the_environment_and_0_keeps_forever(store, monkeypatch):
    now = datetime.now(UTC)
    old_rows(store, now)
    monkeypatch.setenv("DMI_HISTORY_RETENTION_DAYS", "0")
    monkeypatch.setenv("DMI_LOCATIONS_RETENTION_DAYS", "60")
    assert store.prune(dry_run=True) == DELETED | {"dmi_mirror_history": 0, "dmi_blob_locations": 0}
    assert store.prune(history_days=460, locations_days=30, dry_run=True) == DELETED | {"dmi_mirror_history": 3}
    monkeypatch.setenv("DMI_HISTORY_RETENTION_DAYS", "a year")
    with pytest.raises(DmiError, match="DMI_HISTORY_RETENTION_DAYS must be a whole number of days"):
        store.prune(dry_run=True)


def test_the_daily_prune_runs_once_a_day_per_database(store):
    from sqlalchemy import update

    from dmi_provider.tracking.models import Lease

    now = datetime.now(UTC)
    old_rows(store, now)
    assert store.prune_daily() == DELETED
    assert remaining(store)["history"] == KEPT["history"]
    for run, days in (("x1", 430), ("x2", 440)):  # more old rows the same day: left for tomorrow
        store.record(outcome("unchanged", D1, run, target="ecr/a", finished_at=now - timedelta(days=days)))
    other = TrackingStore(store.url)  # another worker: the same database, the same day
    assert store.prune_daily() is None and other.prune_daily() is None
    assert len(remaining(store)["history"]) == len(KEPT["history"]) + 2
    with store.engine.begin() as conn:  # a day later
        conn.execute(update(Lease).where(Lease.key.like("prune%")).values(expires_at=now.timestamp() - 1))
    assert other.prune_daily() == dict.fromkeys(DELETED, 0) | {"dmi_mirror_history": 2}
    assert remaining(store)["history"] == KEPT["history"]
    other.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_dmi_prune_history(kind, tmp_path, request):
    from tests.rig.cli import dmi

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'prune.db'}"
    else:
        url = request.getfixturevalue("postgres").database("prune_cli")
    store = TrackingStore(url)
    old_rows(store, datetime.now(UTC))
    dry = dmi("prune-history", "--db", url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "dmi_mirror_history: 5 rows would be deleted (finished more than 400 days ago; each section and "
        "target keeps its latest row, its latest good row and the first row of its current digest)",
        "dmi_blob_locations: 1 row would be deleted (not seen for 30 days)",
        "dmi_leases: 1 row would be deleted (expired more than an hour ago)",
        "dmi_pull_claims: 1 row would be deleted (older than the longest pull window, 31 days)"]
    assert remaining(store)["history"] != KEPT["history"]
    done = dmi("prune-history", "--db", url, "--history-days", "460", "--locations-days", "20", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"dry_run": False, "history_days": 460, "locations_days": 20,
                                       "deleted": DELETED | {"dmi_mirror_history": 3, "dmi_blob_locations": 2}}
    assert remaining(store)["locations"] == [] and len(remaining(store)["history"]) == len(KEPT["history"]) + 2
    store.close()
    bad = dmi("prune-history", "--db", url, "--history-days", "-1")
    assert bad.returncode == 2 and "--history-days: a whole number of days, 0 or more" in bad.stderr
