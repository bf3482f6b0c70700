"""engine = docker end to end: dag.test() through the rig's real dockerd."""

from __future__ import annotations

import hashlib
import json
import textwrap

import docker
import pytest

from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.skopeo import inspect_raw


def local_tags(dockerd) -> set[str]:
    api = docker.APIClient(base_url=dockerd.base_url)
    return {t for image in api.images() for t in (image.get("RepoTags") or [])}


@pytest.mark.slow
def test_docker_engine_mirrors_records_and_cleans_up(airflow_env, dockerd, hub, hub_registry, ecr, ecr_env, factory,
                                                    tmp_path):
    single = factory.image(layers=[factory.layer(), factory.layer()])
    multi = factory.multiarch(("linux/amd64", "linux/arm64"), media="oci")
    push(rig_client(hub_registry, HUB_USER), "dk1/single", "1.0", single)
    push(rig_client(hub_registry, HUB_USER), "dk1/multi", "1.0", multi)
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1h
        engine = docker
        docker-url = {dockerd.base_url}
        source-registry = {hub.host}
        target-registry = {ecr.registry.host}
        insecure-registries = {hub.host} {ecr.registry.host}
        source-repository = dk1
        project = dk1-mirror
        tag = 1.0
        [single]
        image = single
        [multi]
        image = multi
    """))
    run = airflow_env.run("dmi_mirror", config, env=ecr_env)
    assert run["state"] == "success", run["log"][-6000:]
    store = TrackingStore(f"sqlite:///{ecr_env['DB_PATH']}")
    rows = {r["section"]: r for r in store.history()}
    assert {r["status"] for r in rows.values()} == {"copied"}
    for name in ("single", "multi"):
        raw = inspect_raw(f"{ecr.registry.host}/dk1-mirror/{name}:1.0", ecr.registry.credentials)
        assert rows[name]["target_digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()  # what the registry holds
    # The daemon pushed one platform of the multi-arch source: a single-image manifest, another digest.
    assert json.loads(inspect_raw(f"{ecr.registry.host}/dk1-mirror/multi:1.0", ecr.registry.credentials))["layers"]
    assert rows["multi"]["target_digest"] != multi.digest and rows["multi"]["source_digest"] == multi.digest
    assert not {t for t in local_tags(dockerd) if "dk1" in t}  # local images removed after the push

    hub.reset()
    again = airflow_env.run("dmi_mirror", config, env=ecr_env)
    assert again["state"] == "success"
    assert hub.count("GET", "manifest") == 0 and hub.count("GET", "blob") == 0  # no pull at all
    assert [r["status"] for r in store.history(limit=2)] == ["unchanged", "unchanged"]
    assert again["steps"] == {}  # settled by the planning task: no task of the group ran


@pytest.mark.slow
def test_docker_engine_surfaces_the_registry_error(airflow_env, dockerd, open_registry, hub_registry, factory,
                                                   tmp_path):
    # The Hub stand-in lets anyone pull (so the HEADs pass) and only its users push: the daemon's push is refused.
    push(rig_client(open_registry), "dk2/app", "1", factory.image())
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1h
        [refused]
        image = app
        tag = 1
        engine = docker
        docker-url = {dockerd.base_url}
        keep-local-images = true
        source-registry = {open_registry.host}
        source-repository = dk2
        target = registry
        target-registry = {hub_registry.host}
        insecure-registries = {open_registry.host} {hub_registry.host}
        project = dk2
    """))
    env = {"DB_PATH": str(tmp_path / "t.db")}
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "failed"
    steps = run["steps"]["[refused] 1"]
    assert steps["tag"] == "success"  # the docker engine's tag is a task of its own
    assert steps["push"] == "failed" and steps["record"] == "failed"
    row = TrackingStore(f"sqlite:///{env['DB_PATH']}").history()[0]
    assert row["status"] == "failed"
    assert row["error"].startswith(f"DockerRefused: push {hub_registry.host}/dk2/app:1: ")
    assert "unauthorized" in row["error"] or "denied" in row["error"]
    assert f"{open_registry.host}/dk2/app:1" in local_tags(dockerd)  # keep-local-images = true
