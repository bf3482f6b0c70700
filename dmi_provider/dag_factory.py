"""config.ini -> Airflow DAGs: one DAG per refresh value, one task group per section.

Parse time only reads the config file: no network, no database.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, DeltaTriggerTimetable, Param, task_group

from dmi_provider.config import MirrorConfig, Refresh, load_config
from dmi_provider.operators.mirror import (
    EnsureRepositoryOperator,
    PullImageOperator,
    PushImageOperator,
    RecordMirrorOperator,
    ResolveTagsOperator,
    TagImageOperator,
)
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import describe_filter

START_DATE = datetime(2024, 1, 1, tzinfo=UTC)


class SharedChoices(list):
    """The trigger form's list of sections. Airflow deep-copies a DAG's params into every operator it makes:
    with this list copied each time, a config's parse time grew with the square of its sections. Nothing
    mutates it after the DAG is built, so every copy may share it."""

    def __deepcopy__(self, memo: dict) -> SharedChoices:
        return self


MAP_INDEX = "{{ task.tags[0][0] }}"  # each mapped instance shows its source tag
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


def build_group(spec: MirrorSpec) -> Any:
    """One task group per section, mapped over its tags: each tag's pull, tag, ensure_repository, push and
    record are task instances of their own (named by the tag in the UI). A section with tags-* filters
    first lists the source's tags in a `tags_<group>` task; the others expand over their named tags."""
    ids: dict[str, Any] = {"pull_task_id": f"{spec.group_id}.pull", "push_task_id": f"{spec.group_id}.push"}
    pairs: Any = [list(p) for p in spec.pairs()]
    pool = spec.budget.pool
    if spec.selection.filter.active:
        pairs = ResolveTagsOperator(task_id=f"tags_{spec.group_id}", spec=spec, tags=pairs, pool=pool, **ids).output

    @task_group(group_id=spec.group_id, tooltip=f"[{spec.section}] {spec.source.name}")
    def mirror(pair: Any) -> None:
        each: dict[str, Any] = {"spec": spec, "tags": [pair], "map_index_template": MAP_INDEX, **ids}
        # The tasks that talk to the source share its pool: concurrency per source host.
        # engine = docker: the steps on the daemon run on the workers of one queue (docker-queue).
        daemon: dict[str, Any] = {"queue": spec.engine.queue} if spec.engine.queue else {}
        pull = PullImageOperator(task_id="pull", pool=pool, **daemon, **each)
        tag = TagImageOperator(task_id="tag", retries=0, **daemon, **each)
        ensure = EnsureRepositoryOperator(task_id="ensure_repository", **each)
        push = PushImageOperator(task_id="push", pool=pool, **daemon, **each)
        record = RecordMirrorOperator(task_id="record", retries=1, **each)
        pull >> tag >> ensure >> push >> record

    return mirror.expand(pair=pairs)


def build_dags(path: str) -> dict[str, DAG]:
    """The DAGs of one config file. A bad config raises ConfigError, which Airflow shows as the DAG
    file's import error with every problem (file:line, section, key, value, what is allowed)."""
    config = load_config(path)
    dags = {}
    for dag_id, specs in config.dags().items():
        refresh = _refresh(specs)
        schedule = "@once" if refresh.interval is None else DeltaTriggerTimetable(refresh.interval)
        sections = [s.section for s in specs]
        with DAG(
            dag_id,
            schedule=schedule,
            start_date=START_DATE,
            catchup=False,
            max_active_runs=1,
            tags=["dmi", "mirror", f"refresh:{refresh.text}"],
            doc_md=_doc(dag_id, specs, config),
            default_args=DEFAULT_ARGS,
            params={
                "force": Param(False, type="boolean", description="Copy even when the target holds the digest"),
                "dry_run": Param(False, type="boolean", description="Plan only: write nothing at the target"),
                "sections": Param([], type="array", items={"type": "string", "enum": SharedChoices(sections)},
                                  description="Only these sections (empty: all)"),
            },
        ) as dag:
            for spec in specs:
                build_group(spec)
        dags[dag_id] = dag
    return dags
