"""The tracking tables on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dmi_provider.tracking.models import SCHEMA_VERSION
from dmi_provider.tracking.store import MirrorOutcome, TrackingStore, default_url


def outcome(status: str, digest: str | None, run: str, target: str = "ecr/istio/proxyv2:1.7.0", **kw) -> MirrorOutcome:
    return MirrorOutcome(dag_id="dmi_mirror", run_id=run, section="aws/proxyv2", source="docker.io/istio/proxyv2:1.7.0",
                         target=target, status=status, source_digest=digest, target_digest=digest, **kw)


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


def test_a_read_only_store_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    reader = TrackingStore(url, read_only=True)
    assert reader.state() == [] and reader.history() == [] and reader.timeline("x") == []
    with reader.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar() == 0  # no table made
    with pytest.raises(RuntimeError, match="read-only"):
        reader.record(outcome("copied", "sha256:" + "1" * 64, "r1"))

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
    with pytest.raises(RuntimeError, match="has schema 1, older than this DMI's 4: the next mirror task"):
        TrackingStore(url, read_only=True).history()
    store = TrackingStore(url)
    store.record(MirrorOutcome("d", "r2", "s", "docker.io/a:1", "ecr/a:1", "unchanged", ratelimit_remaining=40,
                               ratelimit_limit=100, ratelimit_source="192.0.2.1", source_pulls=0, target_kind="ecr"))
    rows = store.history()
    assert [(r["run_id"], r["ratelimit_remaining"], r["ratelimit_limit"], r["ratelimit_source"], r["target_kind"])
            for r in rows] == [("r2", 40, 100, "192.0.2.1", "ecr"), ("r1", 42, None, None, None)]
    assert store.state()[0]["target_kind"] == "ecr"
    assert TrackingStore(url, read_only=True).history()[1]["bytes_transferred"] == 10

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


# -- issue 26, item 11: a locked or unreachable database ------------------------------------------------------
def hold(path, mode: str):
    """Another process's write transaction on a SQLite file: IMMEDIATE lets readers in, EXCLUSIVE does not."""
    import sqlite3

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute(f"BEGIN {mode}")
    return holder


@pytest.fixture
def database_errors():
    """What every engine's driver raised, in order (counts how often a lock was waited for)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: list[str] = []

    def note(context):
        seen.append(str(context.original_exception))

    event.listen(Engine, "handle_error", note)
    yield seen
    event.remove(Engine, "handle_error", note)


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_locked_database_is_waited_for_once_then_reported(tmp_path, monkeypatch, database_errors, mode):
    """EXCLUSIVE also locks out the table check of migrate(), which retried "locked" 8 times."""
    monkeypatch.setenv("DMI_TRACKING_BUSY_TIMEOUT", "0.2")
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    TrackingStore(url).migrate()
    holder = hold(path, mode)
    store = TrackingStore(url)
    try:
        with pytest.raises(Exception) as caught:
            store.record_many([outcome("copied", "sha256:" + "1" * 64, "r1")])
    finally:
        holder.rollback()
        holder.close()
    assert database_errors == ["database is locked"]  # one busy_timeout wait, no retry
    from dmi_provider.tracking.store import TrackingError

    assert isinstance(caught.value, TrackingError) and caught.value.retryable
    assert str(caught.value) == (f"tracking database {url}: database is locked (another process held it "
                                 "for longer than the busy timeout, 0.2s: DMI_TRACKING_BUSY_TIMEOUT)")
    store.record_many([outcome("copied", "sha256:" + "1" * 64, "r1")])  # the lock is gone: recorded
    assert len(store.history()) == 1


def test_an_unreachable_database_is_one_line_without_the_password(database_errors):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = TrackingStore(f"postgresql+psycopg2://dmi:pg-secret-pw@127.0.0.1:{port}/dmi")
    with pytest.raises(Exception) as caught:
        store.record_many([outcome("copied", "sha256:" + "1" * 64, "r1")])
    from dmi_provider.tracking.store import TrackingError

    assert isinstance(caught.value, TrackingError) and caught.value.retryable
    assert str(caught.value) == (f"tracking database postgresql+psycopg2://dmi:***@127.0.0.1:{port}/dmi: "
                                 f'connection to server at "127.0.0.1", port {port} failed: Connection refused')
    assert len(database_errors) == 1
