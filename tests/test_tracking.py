"""The tracking tables on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from dmi_provider.tracking.models import SCHEMA_VERSION
from dmi_provider.tracking.store import MirrorOutcome, TrackingStore, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracking.db'}"
    else:
        url = request.getfixturevalue("postgres").database(f"tracking_{request.node.name.split('[')[0][5:30]}")
    store = TrackingStore(url)
    yield store
    store.close()


def outcome(status: str, digest: str | None, run: str, target: str = "ecr/istio/proxyv2:1.7.0", **kw) -> MirrorOutcome:
    return MirrorOutcome(dag_id="dmi_mirror", run_id=run, section="aws/proxyv2", source="docker.io/istio/proxyv2:1.7.0",
                         target=target, status=status, source_digest=digest, target_digest=digest, **kw)


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


def test_newer_schema_is_refused(tmp_path):
    from sqlalchemy.orm import Session

    from dmi_provider.tracking.models import SchemaVersion

    store = TrackingStore(f"sqlite:///{tmp_path / 't.db'}")
    store.migrate()
    with Session(store.engine) as session, session.begin():
        session.add(SchemaVersion(version=99))
    with pytest.raises(RuntimeError, match=f"has schema 99, newer than this DMI's {SCHEMA_VERSION}"):
        TrackingStore(store.url).migrate()


def test_default_url(tmp_path):
    assert default_url(str(tmp_path / "x" / "t.db")) == f"sqlite:///{tmp_path}/x/t.db"
    assert default_url(None, str(tmp_path)) == f"sqlite:///{tmp_path}/dmi/tracking.db"


def test_concurrent_writers_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    TrackingStore(url).migrate()
    code = ("import sys; from dmi_provider.tracking.store import *; s = TrackingStore(sys.argv[1]); "
            "[s.record(MirrorOutcome('d', f'r{i}', 's', 'src', f't{sys.argv[2]}', 'copied', target_digest='x'))"
            " for i in range(30)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(n)]) for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    assert len(TrackingStore(url).history(limit=1000)) == 120


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


def test_a_read_only_store_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    reader = TrackingStore(url, read_only=True)
    assert reader.state() == [] and reader.history() == [] and reader.timeline("x") == []
    with reader.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar() == 0  # no table made
    with pytest.raises(RuntimeError, match="read-only"):
        reader.record(outcome("copied", "sha256:" + "1" * 64, "r1"))


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


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    """Schema 1 (before the pull budget columns): the columns are added, every row is kept."""
    import sqlite3

    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE dmi_schema (version INTEGER PRIMARY KEY);
        INSERT INTO dmi_schema VALUES (1);
        CREATE TABLE dmi_mirror_history (id INTEGER PRIMARY KEY AUTOINCREMENT, dag_id VARCHAR(250), run_id VARCHAR(250),
            logical_date DATETIME, section VARCHAR(250), source VARCHAR(512), target VARCHAR(512),
            source_digest VARCHAR(100), target_digest VARCHAR(100), platforms TEXT, status VARCHAR(20), error TEXT,
            bytes_transferred BIGINT, blobs_copied INTEGER, blobs_mounted INTEGER, blobs_skipped INTEGER,
            ratelimit_remaining INTEGER, started_at DATETIME, finished_at DATETIME);
        CREATE TABLE dmi_mirror_state (target VARCHAR(512) PRIMARY KEY, source VARCHAR(512), dag_id VARCHAR(250),
            section VARCHAR(250), last_digest VARCHAR(100), last_status VARCHAR(20), last_run_id VARCHAR(250),
            first_mirrored DATETIME, last_checked DATETIME, last_changed DATETIME);
        INSERT INTO dmi_mirror_history (dag_id, run_id, section, source, target, platforms, status, bytes_transferred,
            blobs_copied, blobs_mounted, blobs_skipped, ratelimit_remaining, finished_at)
            VALUES ('d', 'r1', 's', 'docker.io/a:1', 'ecr/a:1', '', 'copied', 10, 1, 0, 0, 42, '2026-01-01 00:00:00');
    """)
    db.commit()
    db.close()
    url = f"sqlite:///{path}"
    with pytest.raises(RuntimeError, match="has schema 1, older than this DMI's 3: the next mirror task"):
        TrackingStore(url, read_only=True).history()
    store = TrackingStore(url)
    store.record(MirrorOutcome("d", "r2", "s", "docker.io/a:1", "ecr/a:1", "unchanged", ratelimit_remaining=40,
                               ratelimit_limit=100, ratelimit_source="192.0.2.1", source_pulls=0, target_kind="ecr"))
    rows = store.history()
    assert [(r["run_id"], r["ratelimit_remaining"], r["ratelimit_limit"], r["ratelimit_source"], r["target_kind"])
            for r in rows] == [("r2", 40, 100, "192.0.2.1", "ecr"), ("r1", 42, None, None, None)]
    assert store.state()[0]["target_kind"] == "ecr"
    assert TrackingStore(url, read_only=True).history()[1]["bytes_transferred"] == 10


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


def test_tables_sort_and_page_on_the_server():
    from dmi_provider.plugins.pages import Column, Paging, table
    from dmi_provider.plugins.render import environment

    rows = [{"name": f"img{i:03d}", "size": None if i % 7 == 0 else i % 10} for i in range(120)]
    columns = [Column("Name", lambda r: r["name"], "name"), Column("Size", lambda r: r["size"], "size")]
    draw = environment().from_string('{% import "tables.html" as t %}{% call(r) t.table(table) %}'
                                     "<td>{{ r.name }}</td><td>{{ r.size }}</td>{% endcall %}")
    html = draw.render(table=table(columns, rows, "none", Paging({"q": "x"}, "name", "desc", 2)))
    assert 'data-rows="120" data-shown="50"' in html and 'data-pages="3" data-page="2"' in html
    assert html.index("img069") < html.index("img068") and "img070" not in html and "img019" not in html
    assert 'href="?q=x&amp;sort=name&amp;dir=asc&amp;page=1"' in html  # the header flips the direction
    last = draw.render(table=table(columns, rows, "none", Paging(sort="size", page=99)))  # past the end: the last page
    assert 'data-shown="20"' in last and last.count("<td>None</td>") == 18  # all 18 without a size sort last
    assert draw.render(table=table(columns, [], "nothing here")).strip() == (
        '<p class="empty">nothing here</p>')
