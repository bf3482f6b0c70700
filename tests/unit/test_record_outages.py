"""The record task when the tracking database is locked or unreachable (issue 26, item 11), and its daily
prune of the tables that only grew (issue 26, also-close). The operators of test_operators.py, the fake
engine and target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowException

from tests.unit.test_operators import group, run  # noqa: F401  (group is a fixture)
from tests.unit.test_tracking import database_errors, hold, outcome  # noqa: F401  (database_errors: a fixture)

WHY = "database is locked (another process held it for longer than the busy timeout, 0.2s: DMI_TRACKING_BUSY_TIMEOUT)"


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_locked_database_fails_the_record_task_in_one_line_after_one_wait(group, tmp_path, monkeypatch,  # noqa: F811
                                                                           database_errors, mode):  # noqa: F811
    ops, store = group
    monkeypatch.setenv("DMI_TRACKING_BUSY_TIMEOUT", "0.2")
    store.migrate()
    holder = hold(tmp_path / "t.db", mode)
    try:
        out, ti, events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    finally:
        holder.rollback()
        holder.close()
    # Airflow's own retries (one for DMI's record tasks) may find the lock gone: not an AirflowFailException.
    assert type(out["record"]) is AirflowException
    assert str(out["record"]) == (f"section 'aws/proxyv2': history not recorded: tracking database "
                                  f"sqlite:///{tmp_path / 't.db'}: {WHY}")
    assert database_errors == ["database is locked"]  # one wait for the whole task, no retry storm
    assert not any(e.added for e in events.values())  # the asset events come with the retry that records
    run(ops, ["record"], ti=ti)  # that retry
    assert sorted(r["status"] for r in store.history()) == ["copied", "unchanged"]


def test_an_unreachable_database_fails_the_record_task_without_its_password(group, monkeypatch):  # noqa: F811
    import socket

    ops, _store = group
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_DMI_TRACKING", f"postgresql://dmi:pg-secret-pw@127.0.0.1:{port}/dmi")
    out, _ti, _events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    assert type(out["record"]) is AirflowException
    assert str(out["record"]) == (f"section 'aws/proxyv2': history not recorded: tracking database "
                                  f"postgresql+psycopg2://dmi:***@127.0.0.1:{port}/dmi: connection to server at "
                                  f'"127.0.0.1", port {port} failed: Connection refused')


def test_the_record_task_prunes_the_tables_once_a_day(group):  # noqa: F811
    from sqlalchemy import select

    from dmi_provider.tracking.models import Lease

    ops, store = group
    long_ago = datetime.now(UTC) - timedelta(days=500)
    for n in range(3):  # another image's old history: its latest row stays
        store.record(outcome("unchanged", "sha256:" + "1" * 64, f"old{n}", target="ecr/old:1",
                             finished_at=long_ago + timedelta(days=n)))
    run(ops, ["pull", "tag", "ensure", "push", "record"])
    assert sorted(r["run_id"] for r in store.history(target="ecr/old:1")) == ["old0", "old2"]  # since when, latest
    assert len(store.history()) == 4
    with store.engine.connect() as conn:
        assert conn.execute(select(Lease.key)).scalars().all() == ["prune tracking tables"]
    store.record(outcome("unchanged", "sha256:" + "1" * 64, "old9", target="ecr/old:1", finished_at=long_ago))
    run(ops, ["record"])  # the same day: no second prune
    assert len(store.history(target="ecr/old:1")) == 3


def test_a_locked_database_costs_the_planning_task_no_copy(group, tmp_path, monkeypatch, capsys,  # noqa: F811
                                                           database_errors):  # noqa: F811
    import dataclasses

    from airflow.sdk import DAG

    from dmi_provider.operators.plan import PlanMirrorsOperator
    from dmi_provider.spec import SelectionSpec

    ops, store = group
    spec = dataclasses.replace(ops["pull"].spec, selection=SelectionSpec(tags=("1", "2")))

    class Book:  # the config's one section, on the fake engine: tag 1 changed, tag 2 not
        def lane(self, dag_id, lane):
            return [spec]

    with DAG("fake_dag", schedule=None):
        plan = PlanMirrorsOperator(task_id="plan", book=Book(), lane="default")
    monkeypatch.setenv("DMI_TRACKING_BUSY_TIMEOUT", "0.2")
    store.migrate()
    holder = hold(tmp_path / "t.db", "IMMEDIATE")
    try:
        items = plan.execute({"params": {}, "run_id": "manual__1", "dag_run": None,
                              "logical_date": datetime(2026, 11, 1, tzinfo=UTC)})
    finally:
        holder.rollback()
        holder.close()
    assert [item[1:] for item in items] == [["1", "1"]]  # what changed is still copied
    logged = capsys.readouterr().out  # the task log
    database = f"sqlite:///{tmp_path / 't.db'}"
    database = f"sqlite:///{tmp_path / 't.db'}"
    assert f"1 unchanged image(s): history not recorded: tracking database {database}: {WHY}" in logged
    assert database_errors == ["database is locked"]  # one wait, then no prune either
    assert store.history() == []  # nothing half-written
