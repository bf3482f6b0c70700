"""The Airflow pipeline end to end: dag.test() of the DAG folder's dmi_mirror.py on the real rig."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import BASIC_USER, HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.skopeo import inspect_raw

_ns = itertools.count(1)


def write_config(tmp_path, text: str):
    path = tmp_path / "config.ini"
    path.write_text(textwrap.dedent(text))
    return path


def test_sample_config_makes_the_documented_dags(airflow_env):
    from tests.conftest import ROOT

    listing = airflow_env.run(None, ROOT / "config.ini")
    assert listing["import_errors"] == {}
    dags = listing["dags"]
    assert sorted(dags) == ["dmi_mirror", "dmi_mirror_1d"]
    assert dags["dmi_mirror"]["timetable"] == "DeltaTriggerTimetable"
    assert dags["dmi_mirror"]["interval"] == "7 days, 0:00:00"
    assert dags["dmi_mirror_1d"]["interval"] == "1 day, 0:00:00"
    assert dags["dmi_mirror"]["catchup"] is False and dags["dmi_mirror"]["max_active_runs"] == 1
    assert dags["dmi_mirror"]["params"] == ["dry_run", "force", "sections"]
    assert dags["dmi_mirror"]["tags"] == ["dmi", "mirror", "refresh:1w"]
    assert "| [aws/proxyv2] | `docker.io/istio/proxyv2` | 1.7.0 |" in dags["dmi_mirror"]["doc_md"]
    # One planning task and one task group per source pool (every sample section pulls from docker.io).
    assert dags["dmi_mirror"]["tasks"] == [
        "docker_io.ensure_repository", "docker_io.pull", "docker_io.push", "docker_io.record", "docker_io.tag",
        "plan_docker_io"]


def test_once_refresh_and_broken_config(airflow_env, tmp_path):
    config = write_config(tmp_path, """
        [DEFAULT]
        refresh = 6h
        project = p
        [a]
        image = a
        tag = 1
        [b]
        image = b
        tag = 1
        refresh = 0
    """)
    dags = airflow_env.run(None, config)["dags"]
    assert dags["dmi_mirror"]["interval"] == "6:00:00"
    assert dags["dmi_mirror_once"]["timetable"] == "OnceTimetable"

    config.write_text("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nprojet = p\n")
    listing = airflow_env.run(None, config)
    assert listing["dags"] == {}
    (error,) = listing["import_errors"].values()
    assert f"{config}:6: section 'a': projet = 'p': unknown key; did you mean 'project'?" in error
    assert f"{config}:3: section 'a': project: missing" in error


def test_config_errors_read_right_in_airflows_own_cli(airflow_env, tmp_path):
    """Airflow's CLI prints through rich, which takes [aws/a] for markup: the section must survive it."""
    config = tmp_path / "config.ini"
    config.write_text("[DEFAULT]\nrefresh = 1w\n[aws/a]\nimage = a\ntag = 1\nproject = p\nsorce-repository = s\n")
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = airflow_env.env | {"DMI_CONFIG": str(config), "COLUMNS": "400"}
    parsed = subprocess.run([airflow, "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=300)
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    listed = subprocess.run([airflow, "dags", "list-import-errors"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert (f"{config}:7: section 'aws/a': sorce-repository = 's': unknown key; did you mean 'source-repository'?"
            in listed.stdout), listed.stdout


def test_mirror_into_ecr_then_unchanged_force_and_sections(airflow_env, hub, hub_registry, ecr, ecr_env, factory,
                                                           tmp_path):
    ns = f"e{next(_ns)}"
    images = {"istio/proxyv2": factory.image(), "istio/pilot": factory.image(media="oci"),
              "library/alpine": factory.multiarch(base=factory.layer())}
    for repo, artifact in images.items():
        push(rig_client(hub_registry, HUB_USER), f"{ns}{repo}", "1.7.0", artifact)
    config = write_config(tmp_path, f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        target-registry = {ecr.registry.host}
        insecure-registries = {hub.host}, {ecr.registry.host}
        tag-mutability = IMMUTABLE
        scan-on-push = true
        repository-tags = team=platform

        [aws/proxyv2]
        image = proxyv2
        tag = 1.7.0
        source-repository = {ns}istio
        project = {ns}istio

        [aws/pilot]
        image = pilot
        tag = 1.7.0
        source-repository = {ns}istio
        project = {ns}istio

        [alpine]
        image = {ns}library/alpine
        tag = 1.7.0
        project = mirror
    """)
    run = airflow_env.run("dmi_mirror", config, env=ecr_env)
    assert run["state"] == "success", run["log"][-5000:]
    assert set(run["tasks"].values()) == {"success"}

    client = ecr.boto3_client()
    repo = client.describe_repositories(repositoryNames=[f"{ns}istio/proxyv2"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    targets = {"istio/proxyv2": f"{ns}istio/proxyv2", "istio/pilot": f"{ns}istio/pilot",
               "library/alpine": f"mirror/{ns}library/alpine"}
    for name, artifact in images.items():
        assert inspect_raw(f"{ecr.registry.host}/{targets[name]}:1.7.0", ecr.registry.credentials) == artifact.manifest

    store = TrackingStore(f"sqlite:///{ecr_env['DB_PATH']}")
    rows = store.history()
    assert sorted(r["status"] for r in rows) == ["copied"] * 3
    by_target = {r["target"]: r for r in rows}
    alpine = by_target[f"{ecr.registry.host}/mirror/{ns}library/alpine:1.7.0"]
    assert alpine["target_digest"] == alpine["source_digest"] == images["library/alpine"].digest
    assert alpine["platforms"] == "linux/amd64,linux/arm64"
    assert alpine["dag_id"] == "dmi_mirror" and alpine["section"] == "alpine" and alpine["run_id"] == run["run_id"]
    assert alpine["blobs_copied"] == len(images["library/alpine"].blobs) and alpine["bytes_transferred"] > 0
    assert alpine["ratelimit_remaining"] is not None
    assert len(store.state()) == 3
    events = {e["uri"]: e["extra"] for e in run["asset_events"]}
    assert set(events) == {f"oci://{t}" for t in by_target}
    assert events[f"oci://{ecr.registry.host}/mirror/{ns}library/alpine:1.7.0"]["digest"] == alpine["target_digest"]

    hub.reset()
    again = airflow_env.run("dmi_mirror", config, env=ecr_env)
    assert again["state"] == "success"
    # Planning settled all three: the group expanded to no instance (no task ran but the planning task).
    assert again["steps"] == {} and [s for t, s in again["tasks"].items() if t.startswith("plan_")] == ["success"]
    assert hub.count("GET", "manifest") == 0 and hub.count("GET", "blob") == 0
    assert [r["status"] for r in store.history(limit=3)] == ["unchanged"] * 3
    assert again["asset_events"] == []  # no new image, no event

    forced = airflow_env.run("dmi_mirror", config, {"force": True, "sections": ["aws/pilot"]},
                             env=ecr_env | {"DMI_TEST_LOGICAL_DATE": "2026-01-05T00:00:00+00:00"})
    assert forced["state"] == "success", forced["log"][-5000:]
    assert list(forced["steps"]) == ["[aws/pilot] 1.7.0"]  # only the chosen section, copied although unchanged
    latest = store.history(limit=1)[0]
    assert latest["section"] == "aws/pilot" and latest["status"] == "copied"  # an immutable tag, same digest: fine
    assert latest["target_digest"] == images["istio/pilot"].digest
    assert latest["logical_date"].isoformat() == "2026-01-05T00:00:00+00:00"  # a run for a past date
    assert len(store.history()) == 7


def test_dry_run_writes_nothing_and_a_failing_section_fails_alone(airflow_env, hub, hub_registry, ecr, ecr_env,
                                                                 factory, tmp_path):
    ns = f"e{next(_ns)}"
    push(rig_client(hub_registry, HUB_USER), f"{ns}app/good", "1", factory.image())
    config = write_config(tmp_path, f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        source-conn-id = hub_login
        target-registry = {ecr.registry.host}
        insecure-registries = {hub.host}, {ecr.registry.host}
        project = {ns}m
        tag = 1

        [good]
        image = good
        source-repository = {ns}app

        [missing]
        image = missing
        source-repository = {ns}app
    """)
    env = ecr_env | {"AIRFLOW_CONN_HUB_LOGIN": json.dumps({"conn_type": "generic", "login": HUB_USER[0],
                                                           "password": HUB_USER[1]})}
    dry = airflow_env.run("dmi_mirror", config, {"dry_run": True, "sections": ["good"]}, env=env)
    assert dry["state"] == "success"
    assert dry["steps"] == {}  # planned and recorded by the planning task alone
    client = ecr.boto3_client()
    assert client.describe_repositories()["repositories"] == [] or all(
        not r["repositoryName"].startswith(ns) for r in client.describe_repositories()["repositories"])
    store = TrackingStore(f"sqlite:///{env['DB_PATH']}")
    assert [r["status"] for r in store.history()] == ["dry-run"]
    assert store.state() == []

    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "failed"
    good, missing = run["steps"]["[good] 1"], run["steps"]["[missing] 1"]
    assert good["record"] == "success" and good["push"] == "success" and good["tag"] == "success"
    assert missing["pull"] == "failed" and missing["push"] == "upstream_failed"
    assert missing["record"] == "failed"  # it recorded the failure, then failed the run
    failed = store.history(status="failed")[0]
    assert failed["section"] == "missing"
    assert "MANIFEST_UNKNOWN" in failed["error"] and HUB_USER[1] not in failed["error"]
    assert HUB_USER[1] not in run["log"]
    assert store.history(status="copied")[0]["section"] == "good"


def test_target_registry_with_htpasswd_and_postgres_tracking(airflow_env, open_registry, basic_registry, postgres,
                                                              factory, tmp_path):
    ns = f"r{next(_ns)}"
    tracking = postgres.database("pipeline")
    artifact = factory.multiarch()
    push(rig_client(open_registry), f"{ns}src/app", "2.0", artifact)
    config = write_config(tmp_path, f"""
        [DEFAULT]
        refresh = 1d

        [generic]
        image = app
        tag = 2.0
        target-tag = stable
        source-registry = {open_registry.host}
        source-repository = {ns}src
        target = registry
        target-registry = {basic_registry.host}
        target-conn-id = mirror_target
        insecure-registries = {open_registry.host} {basic_registry.host}
        project = {ns}dst
        platforms = linux/arm64
    """)
    env = {"AIRFLOW_CONN_MIRROR_TARGET": json.dumps({"conn_type": "generic", "login": BASIC_USER[0],
                                                     "password": BASIC_USER[1]}),
           "AIRFLOW_CONN_DMI_TRACKING": tracking.replace("postgresql+psycopg2://", "postgres://")}
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "success", run["log"][-5000:]
    index = json.loads(inspect_raw(f"{basic_registry.host}/{ns}dst/app:stable", BASIC_USER))
    assert [m["digest"] for m in index["manifests"]] == [artifact.children[1].digest]
    row = TrackingStore(tracking).history()[0]  # in the dmi_tracking connection's database
    assert row["status"] == "copied" and row["platforms"] == "linux/arm64"
    assert BASIC_USER[1] not in run["log"]
