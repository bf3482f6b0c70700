"""`dmi plan` and `dmi history` against the rig."""

from __future__ import annotations

import json
import subprocess
import textwrap

from dmi_provider.tracking.store import MirrorOutcome, TrackingStore
from tests.rig.cli import DMI, dmi
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.services import MOTO_REGION


def test_plan_heads_only(hub, hub_registry, ecr, factory, tmp_path):
    artifact = factory.image()
    push(rig_client(hub_registry, HUB_USER), "plan1/app", "1", artifact)
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        source-registry = {hub.host}
        target-registry = {ecr.registry.host}
        insecure-registries = {hub.host} {ecr.registry.host}
        [app]
        image = app
        source-repository = plan1
        project = plan1
        tag = 1
        [ghost]
        image = ghost
        source-repository = plan1
        project = plan1
        tag = 1
    """))
    env = {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                   "extra": {"region_name": MOTO_REGION,
                                                             "endpoint_url": ecr.moto.endpoint}}),
           "AWS_DEFAULT_REGION": MOTO_REGION}
    done = dmi("plan", str(config), env=env)
    assert done.returncode == 1  # the ghost section's source does not exist
    lines = done.stdout.splitlines()
    assert lines[0] == (f"[app] {hub.host}/plan1/app:1 -> {ecr.registry.host}/plan1/app:1 (AWS ECR repository "
                        f"plan1/app): copy (source {artifact.digest}, target none; repository plan1/app would be "
                        "created)")
    assert lines[1].startswith("[ghost] error: ") and "MANIFEST_UNKNOWN" in lines[1]
    assert hub.count("GET", "blob") == 0 and hub.count("GET", "manifest", 200) == 0

    subprocess.run([DMI, "copy", "-q", "--insecure", hub.host, "--insecure", ecr.registry.host, "--dst-creds",
                    ":".join(ecr.registry.credentials), f"{hub.host}/plan1/app:1", f"{ecr.registry.host}/plan1/app:1"],
                   check=True, capture_output=True)
    ecr.boto3_client().create_repository(repositoryName="plan1/app")
    again = json.loads(dmi("plan", "--json", "--section", "app", str(config), env=env).stdout)
    assert [(r["section"], r["action"], r["target_digest"]) for r in again] == [
        ("app", "skip (unchanged)", artifact.digest)]


def test_history_table_state_and_json(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    store = TrackingStore(url)
    for run, digest in (("r1", "sha256:" + "a" * 64), ("r2", "sha256:" + "a" * 64), ("r3", None)):
        store.record(MirrorOutcome("dmi_mirror", run, "aws/proxyv2", "docker.io/istio/proxyv2:1.7.0",
                                   "ecr.example/istio/proxyv2:1.7.0", "failed" if digest is None else
                                   ("copied" if run == "r1" else "unchanged"), target_digest=digest,
                                   error="HTTP 404 MANIFEST_UNKNOWN" if digest is None else None,
                                   bytes_transferred=1234 if run == "r1" else 0, blobs_copied=2 if run == "r1" else 0))
    table = dmi("history", "--db", url, env={}).stdout.splitlines()
    assert table[0].split() == ["FINISHED", "STATUS", "TARGET", "DIGEST", "BYTES", "BLOBS", "C/M/S", "DAG", "RUN",
                                "ERROR"]
    assert [line.split()[2] for line in table[1:]] == ["failed", "unchanged", "copied"]
    assert "dmi_mirror/r3" in table[1] and "HTTP 404 MANIFEST_UNKNOWN" in table[1]
    assert "1234" in table[3] and "2/0/0" in table[3]
    state = dmi("history", "--db", url, "--state", env={}).stdout.splitlines()
    assert len(state) == 2 and "ecr.example/istio/proxyv2:1.7.0" in state[1] and "failed" in state[1]
    rows = json.loads(dmi("history", "--db", url, "--json", "--status", "copied", env={}).stdout)
    assert [r["run_id"] for r in rows] == ["r1"]
    assert dmi("history", "--db", url, "--image", "nothing", env={}).stdout.strip() == "no mirror history yet"
    via_db_path = dmi("history", env={"DB_PATH": str(tmp_path / "t.db")}).stdout
    assert via_db_path.count("ecr.example/istio/proxyv2:1.7.0") == 3
