"""DMI's per-source pools, created when a run first needs them. Runs in the scheduler (an Airflow
listener, registered by the plugin): DAG files do no database work, and a task in a missing pool would
never be scheduled."""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from dmi_provider.config_keys import DEFAULT_POOL_SLOTS

log = logging.getLogger(__name__)
OWN_PREFIX = "dmi_"  # pools named by DMI's default (source-pool unset); a pool a user names must exist


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    try:
        session = object_session(dag_run)
        if session is None:
            from airflow.utils.session import create_session

            with create_session() as own:
                ensure_pools(dag_run, own)
        else:
            ensure_pools(dag_run, session)
    except Exception:  # a listener must never break the scheduler
        log.exception("DMI could not check the pools of %s", getattr(dag_run, "run_id", dag_run))


def ensure_pools(dag_run: Any, session: Session) -> list[str]:
    """Create the missing `dmi_*` pools the run's tasks use; name the other missing ones in the log."""
    from airflow.models.pool import Pool

    used = {ti.pool for ti in dag_run.get_task_instances(session=session) if ti.pool}
    existing = set(session.scalars(select(Pool.pool).where(Pool.pool.in_(used))))
    created, missing = [], []
    for name in sorted(used - existing):
        if not name.startswith(OWN_PREFIX):
            missing.append(name)
            continue
        session.add(Pool(pool=name, slots=DEFAULT_POOL_SLOTS, include_deferred=False,
                         description="DMI: tasks that talk to one source registry (source-pool); resize freely"))
        created.append(name)
        log.info("DMI created pool %s with %d slots for DAG %s", name, DEFAULT_POOL_SLOTS, dag_run.dag_id)
    if missing:  # said where users look: the run's note in the UI, and the scheduler's log
        text = (f"DMI: tasks of this run use pool{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)}, which does not exist: they wait until it does. Create it "
                "(Admin -> Pools, or `airflow pools set NAME SLOTS DESCRIPTION`) or change source-pool in config.ini")
        log.error("DAG %s run %s: %s", dag_run.dag_id, dag_run.run_id, text)
        dag_run.note = text
    if created or missing:
        session.flush()
    return created
