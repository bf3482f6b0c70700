"""DMI's per-source pools, created when a run first needs them. Runs in the scheduler (an Airflow listener,
registered by DmiPoolsPlugin, dmi_provider/plugins/scheduler.py): DAG files do no database work, and a task
in a missing pool would never be scheduled."""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from dmi_provider.config import DAG_PREFIX
from dmi_provider.config_keys import DEFAULT_POOL_SLOTS

log = logging.getLogger(__name__)
OWN_PREFIX = "dmi_"  # pools named by DMI's default (source-pool unset); a pool a user names must exist
AIRFLOW_POOL = "default_pool"
DESCRIPTION = "DMI: tasks that talk to one source registry (source-pool); resize freely"


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    # Every DAG run of the deployment passes here, in the scheduler's loop: other DAGs cost a string test.
    if not str(getattr(dag_run, "dag_id", "")).startswith(DAG_PREFIX):
        return
    try:
        used = pools_of(dag_run)
        if used:
            ensure_pools(dag_run, used)
    except Exception:  # a listener must never break the scheduler
        log.exception("DMI could not check the pools of %s", getattr(dag_run, "run_id", dag_run))


def pools_of(dag_run: Any) -> set[str]:
    """The pools other than Airflow's default that the run's tasks use, from the DAG the scheduler attached
    (no query); from the run's task instances when there is none."""
    dag = getattr(dag_run, "dag", None)
    if dag is not None:
        used = {task.pool for task in dag.tasks}
    else:
        used = {ti.pool for ti in dag_run.get_task_instances(session=object_session(dag_run))}
    return {p for p in used if p and p != AIRFLOW_POOL}


def ensure_pools(dag_run: Any, used: set[str]) -> list[str]:
    """Create the missing `dmi_*` pools of `used`; name the other missing ones in the run's note and the log."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    theirs = object_session(dag_run)
    if theirs is not None and theirs.get_bind().dialect.name == "sqlite":
        # SQLite has one writer: a second connection would wait for the scheduler's open transaction, which
        # waits for this listener. There is one scheduler on SQLite, so its own session is safe.
        existing = set(theirs.scalars(select(Pool.pool).where(Pool.pool.in_(used))))
        created = [_add(theirs, name) for name in sorted(used - existing) if name.startswith(OWN_PREFIX)]
        theirs.flush()
    else:
        # Not the scheduler's session (create_session() would hand back that very one, a scoped session of
        # this thread): one short transaction per pool, so two schedulers creating the same pool meet at
        # its unique name and one of them simply finds it made.
        with create_session(scoped=False) as own:
            existing = set(own.scalars(select(Pool.pool).where(Pool.pool.in_(used))))
        created = []
        for name in sorted(used - existing):
            if not name.startswith(OWN_PREFIX):
                continue
            try:
                with create_session(scoped=False) as own:
                    created.append(_add(own, name))
            except IntegrityError:
                log.info("DMI: pool %s was created by another scheduler meanwhile", name)
    for name in created:
        log.info("DMI created pool %s with %d slots for DAG %s", name, DEFAULT_POOL_SLOTS, dag_run.dag_id)
    missing = sorted(p for p in used - existing if not p.startswith(OWN_PREFIX))
    if missing:  # said where users look: the run's note in the UI, and the scheduler's log
        text = (f"DMI: tasks of this run use pool{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)}, which does not exist: they wait until it does. Create it "
                "(Admin -> Pools, or `airflow pools set NAME SLOTS DESCRIPTION`) or change source-pool in config.ini")
        log.error("DAG %s run %s: %s", dag_run.dag_id, dag_run.run_id, text)
        # The note belongs to the run, which the scheduler's transaction holds (locked): it goes with it.
        dag_run.note = text
    return created


def _add(session: Session, name: str) -> str:
    from airflow.models.pool import Pool

    session.add(Pool(pool=name, slots=DEFAULT_POOL_SLOTS, include_deferred=False, description=DESCRIPTION))
    session.flush()
    return name
