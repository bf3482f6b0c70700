"""config.ini -> Airflow DAGs: one DAG per refresh value; per source pool, a planning task and a task group.

Parse time only reads the config file: no network, no database.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, DeltaTriggerTimetable, Param, get_parsing_context, task_group

from dmi_provider.config import DAG_PREFIX, MirrorConfig, Refresh, load_config
from dmi_provider.operators.mirror import (
    EnsureRepositoryOperator,
    PullImageOperator,
    PushImageOperator,
    RecordMirrorOperator,
    TagImageOperator,
)
from dmi_provider.operators.plan import PlanMirrorsOperator
from dmi_provider.planner import SpecBook, lane_of
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import describe_filter

START_DATE = datetime(2024, 1, 1, tzinfo=UTC)


class SharedChoices(list):
    """The trigger form's list of sections. Airflow deep-copies a DAG's params into every operator it makes:
    with this list copied each time, a config's parse time grew with the square of its sections. Nothing
    mutates it after the DAG is built, so every copy may share it."""

    def __deepcopy__(self, memo: dict) -> SharedChoices:
        return self


MAP_INDEX = "[{{ task.item[0] }}] {{ task.item[1] or '(tags)' }}"  # each instance: its section and source tag
PUSH_TIMEOUT = timedelta(hours=6)  # the push step's execution_timeout
SHORT_STEP = timedelta(minutes=15)  # ensure_repository's and record's
DEFAULT_ARGS = {
    "owner": "dmi",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def config_path(dag_file: str | None = None) -> str:
    """DMI_CONFIG, else config.ini beside the DAG file."""
    if os.environ.get("DMI_CONFIG"):
        return os.environ["DMI_CONFIG"]
    return str(Path(dag_file or ".").resolve().parent / "config.ini")


def _tags_cell(spec: MirrorSpec) -> str:
    chosen = spec.selection
    named = list(chosen.tags) + ([describe_filter(chosen.filter)] if chosen.filter.active else [])
    return ", ".join(named)


def _doc(dag_id: str, specs: tuple[MirrorSpec, ...], config: MirrorConfig) -> str:
    rows = [f"| [{s.section}] | `{s.source.name}` | {_tags_cell(s)} | `{s.target_name()}` "
            f"| {', '.join(s.target_tags())} | {', '.join(s.selection.platforms) or 'all'} |" for s in specs]
    return "\n".join([
        f"### {dag_id}", "", f"Mirrors images from `{config.path}`, {_refresh(specs).schedule}.", "",
        "Trigger with **force** to copy even unchanged images, **dry_run** to plan only, and **sections** to "
        "run only some sections.", "",
        "| section | source | tags | target | target tags | platforms |", "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ])


def _refresh(specs: tuple[MirrorSpec, ...]) -> Refresh:
    """The refresh of a DAG's sections (one DAG per refresh; the reader gives every section one)."""
    refresh = specs[0].refresh
    if refresh is None:
        raise ValueError(f"section {specs[0].section!r} has no refresh")
    return refresh


STEPS = ("pull", "tag", "ensure_repository", "push", "record")


def build_lane(book: SpecBook, lane: str, specs: Sequence[MirrorSpec]) -> Any:
    """One planning task and one task group for the sections of a DAG that share a source pool (a lane).

    `plan_<lane>` lists, HEADs and records every unchanged section at once; the group `<lane>` is mapped over
    what changed, one set of pull -> tag -> ensure_repository -> push -> record per (section, tag), named
    `[section] tag`. An unchanged lane expands to no instance: no worker process. (Airflow maps a group over
    one upstream task's return value, so one group per lane, not per section: one planning process per source
    instead of one per section.) `specs` is empty in a task process that builds only its own task's lane."""
    first = specs[0] if specs else None
    pool = first.budget.pool if first else None
    docker = bool(first and first.engine.name == "docker")
    ids: dict[str, Any] = {"pull_task_id": f"{lane}.pull", "push_task_id": f"{lane}.push"}
    plan = PlanMirrorsOperator(task_id=f"plan_{lane}", book=book, lane=lane, pool=pool)

    @task_group(group_id=lane, tooltip=", ".join(sorted({s.source.registry for s in specs})) or lane)
    def copies(item: Any) -> None:
        each: dict[str, Any] = {"book": book, "item": item, "map_index_template": MAP_INDEX, **ids}
        # engine = docker: the steps on the daemon run on the workers of one queue (docker-queue).
        daemon: dict[str, Any] = {"queue": first.engine.queue} if first and first.engine.queue else {}
        pull = PullImageOperator(task_id="pull", pool=pool, **daemon, **each)
        # The registry engine has nothing to do at `tag`: an EmptyOperator, which Airflow marks done without
        # a worker process; the grid still shows the step.
        tag = (TagImageOperator(task_id="tag", retries=0, **daemon, **each) if docker or not specs
               else EmptyOperator(task_id="tag"))
        ensure = EnsureRepositoryOperator(task_id="ensure_repository", execution_timeout=SHORT_STEP, **each)
        # A backstop: each blob is bounded already (stall-timeout, the retry budget). Not on pull, which
        # may wait out a pull limit's window deferred.
        push = PushImageOperator(task_id="push", pool=pool, execution_timeout=PUSH_TIMEOUT, **daemon, **each)
        record = RecordMirrorOperator(task_id="record", retries=1, alias=f"dmi-mirror-{lane}",
                                      execution_timeout=SHORT_STEP, **each)
        pull >> tag >> ensure >> push >> record

    return copies.expand(item=plan.output)


def task_lane(task_id: str) -> str | None:
    """The lane a task id belongs to: `plan_<lane>` or `<lane>.<step>`."""
    if "." in task_id:
        return task_id.partition(".")[0]
    return task_id.removeprefix("plan_") if task_id.startswith("plan_") else None


def _params(sections: Sequence[str] | None) -> dict[str, Param]:
    items: dict[str, Any] = {"type": "string"}
    if sections is not None:
        items["enum"] = SharedChoices(sections)
    return {
        "force": Param(False, type="boolean", description="Copy even when the target holds the digest"),
        "dry_run": Param(False, type="boolean", description="Plan only: write nothing at the target"),
        "sections": Param([], type="array", items=items, description="Only these sections (empty: all)"),
    }


def task_dag(path: str, dag_id: str, task_id: str) -> dict[str, DAG]:
    """What a task process needs: its DAG with its own task's lane, built without reading config.ini (the
    task reads its sections when it runs). The DAG processor builds every DAG in full (`build_dags`)."""
    lane = task_lane(task_id)
    if lane is None or not dag_id.startswith(DAG_PREFIX):
        return build_dags(path, only=dag_id)
    with DAG(dag_id, schedule=None, start_date=START_DATE, catchup=False, max_active_runs=1,
             default_args=DEFAULT_ARGS, params=_params(None)) as dag:
        build_lane(SpecBook(path), lane, ())
    return {dag_id: dag}


def build_dags(path: str, only: str | None = None) -> dict[str, DAG]:
    """The DAGs of one config file (`only`: just that one). A bad config raises ConfigError, which Airflow
    shows as the DAG file's import error with every problem (file:line, section, key, value, what is
    allowed). A task process (Airflow's parsing context names its DAG and task) builds only its task's lane."""
    context = get_parsing_context()
    if only is None and context.dag_id and context.task_id:
        return task_dag(path, context.dag_id, context.task_id)
    only = only or context.dag_id
    config = load_config(path)
    book = SpecBook(path, config)
    dags = {}
    for dag_id, specs in config.dags().items():
        if only and dag_id != only:
            continue
        refresh = _refresh(specs)
        schedule = "@once" if refresh.interval is None else DeltaTriggerTimetable(refresh.interval)
        with DAG(
            dag_id,
            schedule=schedule,
            start_date=START_DATE,
            catchup=False,
            max_active_runs=1,
            tags=["dmi", "mirror", f"refresh:{refresh.text}"],
            doc_md=_doc(dag_id, specs, config),
            default_args=DEFAULT_ARGS,
            params=_params([s.section for s in specs]),
        ) as dag:
            lanes: dict[str, list[MirrorSpec]] = {}
            for spec in specs:
                lanes.setdefault(lane_of(spec), []).append(spec)
            for lane, members in lanes.items():
                build_lane(book, lane, members)
        dags[dag_id] = dag
    return dags
