"""The DAGs' shape: a planning task and one mapped group per source pool; a task process builds only its own
lane, without reading config.ini; the registry engine's `tag` step costs no worker process."""

from __future__ import annotations

import textwrap

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator

from dmi_provider.dag_factory import build_dags, task_lane
from dmi_provider.operators import PlanMirrorsOperator, TagImageOperator
from dmi_provider.planner import lane_of

CONFIG = """
    [DEFAULT]
    refresh = 1h
    project = m
    [a]
    image = a
    tag = 1
    [b]
    image = b
    tag = 1
    [q]
    image = q
    tag = 1
    source-registry = quay.io
    [d]
    image = d
    tag = 1
    engine = docker
    refresh = 6h
    [e]
    image = e
    tag = 1
    engine = docker
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.ini"
    path.write_text(textwrap.dedent(CONFIG))
    return path


def test_one_planning_task_and_one_group_per_source_pool(config, monkeypatch):
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    dags = build_dags(str(config))
    assert sorted(dags) == ["dmi_mirror", "dmi_mirror_6h"]
    steps = ["ensure_repository", "pull", "push", "record", "tag"]
    assert sorted(dags["dmi_mirror"].task_ids) == sorted(
        [f"{lane}.{s}" for lane in ("docker_io", "quay_io", "docker_io__docker") for s in steps]
        + ["plan_docker_io", "plan_quay_io", "plan_docker_io__docker"])
    dag = dags["dmi_mirror"]
    assert isinstance(dag.get_task("plan_docker_io"), PlanMirrorsOperator)
    assert isinstance(dag.get_task("docker_io.tag"), EmptyOperator)
    # What the scheduler decides from the serialized DAG: the registry engine's tag never gets a process.
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import create_scheduler_operator

    schedulable = {t: TaskInstance.is_task_schedulable(create_scheduler_operator(dag.get_task(t)))
                   for t in ("docker_io.tag", "docker_io.pull", "plan_docker_io")}
    assert schedulable == {"docker_io.tag": False, "docker_io.pull": True, "plan_docker_io": True}
    assert dag.get_task("docker_io.pull").pool == "dmi_docker_io"
    docker = dags["dmi_mirror_6h"]  # the docker engine tags on its daemon: a task of its own, in a lane of its own
    assert isinstance(docker.get_task("docker_io__docker.tag"), TagImageOperator)
    assert dag.params.get_param("sections").schema["items"]["enum"] == ["a", "b", "q", "e"]
    # A docker section beside registry ones of the same source: a lane of its own, whose tag really runs.
    assert isinstance(dag.get_task("docker_io__docker.tag"), TagImageOperator)


def test_a_task_process_builds_only_its_lane_without_reading_the_config(tmp_path, monkeypatch):
    missing = tmp_path / "not-read.ini"  # the task reads its sections when it runs, not while parsing
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "dmi_mirror_1h")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "quay_io.push")
    dags = build_dags(str(missing))
    assert list(dags) == ["dmi_mirror_1h"]
    assert sorted(dags["dmi_mirror_1h"].task_ids) == [
        "plan_quay_io", "quay_io.ensure_repository", "quay_io.pull", "quay_io.push", "quay_io.record", "quay_io.tag"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "plan_quay_io")  # the planner needs its mapped group
    assert "quay_io.record" in build_dags(str(missing))["dmi_mirror_1h"].task_ids


def test_a_dag_id_alone_builds_that_dag_in_full(config, monkeypatch):
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "dmi_mirror_6h")
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", raising=False)
    assert list(build_dags(str(config))) == ["dmi_mirror_6h"]


def test_lanes_and_task_ids():
    from dmi_provider.config import section_spec

    spec = section_spec({"image": "a", "tag": "1", "project": "m", "source-registry": "r.local:5000"})
    assert lane_of(spec) == "r_local_5000"
    assert [task_lane(t) for t in ("plan_r_local_5000", "r_local_5000.pull", "plan_x.pull", "other")] == [
        "r_local_5000", "r_local_5000", "plan_x", None]


def test_two_pools_that_would_share_a_task_group_are_named():
    from dmi_provider.config import ConfigError, parse_config

    text = ("[DEFAULT]\nrefresh = 1w\nproject = m\ntag = 1\n[a]\nimage = a\nsource-pool = dmi_a.b\n"
            "[b]\nimage = b\nsource-pool = a_b\n")
    with pytest.raises(ConfigError) as found:
        parse_config(text, environ={})
    assert [str(i) for i in found.value.issues] == [
        "config.ini:10: section 'b': source-pool = 'a_b': its task group would be 'a_b' in DAG dmi_mirror, as that "
        "of section 'a', which uses another pool, engine or queue: rename one pool"]


def test_the_steps_that_cannot_wait_have_an_execution_timeout(tmp_path):
    # A hung push (a source or target that stops answering mid-blob) must not hold its worker slot forever;
    # pull may wait out a pull window deferred, so it has none.
    from datetime import timedelta

    from dmi_provider.dag_factory import build_dags

    config = tmp_path / "config.ini"
    config.write_text("[DEFAULT]\nrefresh = 1h\nproject = p\ntag = 1\n[a]\nimage = a\n")
    (dag,) = build_dags(config).values()
    timeouts = {t.task_id.rsplit(".", 1)[-1]: t.execution_timeout for t in dag.tasks}
    assert timeouts["push"] == timedelta(hours=6)
    assert timeouts["record"] == timeouts["ensure_repository"] == timedelta(minutes=15)
    assert timeouts["pull"] is None
