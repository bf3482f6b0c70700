"""`dmi sync CONFIG`: a whole config in one process, as the DAGs would mirror it, with their history rows."""

from __future__ import annotations

import json
import textwrap

from dmi_provider.tracking.store import TrackingStore
from tests.rig.cli import dmi
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.services import MOTO_REGION
from tests.rig.skopeo import inspect_raw


def test_sync_mirrors_a_config_records_history_and_reruns_for_free(hub, hub_registry, ecr, open_registry, factory,
                                                                   tmp_path):
    images = {"sync/app": factory.image(), "sync/tool": factory.multiarch(base=factory.layer())}
    for repo, artifact in images.items():
        push(rig_client(hub_registry, HUB_USER), repo, "1.0", artifact)
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        source-registry = {hub.host}
        insecure-registries = {hub.host}, {ecr.registry.host}, {open_registry.host}
        tag = 1.0

        [app]
        image = sync/app
        project = mirror
        target-registry = {ecr.registry.host}

        [tool]
        image = sync/tool
        project = mirror
        target = registry
        target-registry = {open_registry.host}

        [ghost]
        image = sync/ghost
        project = mirror
        target = registry
        target-registry = {open_registry.host}
    """))
    db = tmp_path / "tracking.db"
    env = {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                   "extra": {"region_name": MOTO_REGION,
                                                             "endpoint_url": ecr.moto.endpoint}}),
           "AWS_DEFAULT_REGION": MOTO_REGION, "DB_PATH": str(db)}

    done = dmi("sync", str(config), env=env)
    assert done.returncode == 1, done.stderr[-3000:]  # the ghost's tag does not exist; the others are mirrored
    lines = done.stdout.splitlines()
    assert f"copied: {hub.host}/sync/app:1.0 -> {ecr.registry.host}/mirror/sync/app:1.0 " \
           f"{images['sync/app'].digest}" in lines
    assert f"copied: {hub.host}/sync/tool:1.0 -> {open_registry.host}/mirror/sync/tool:1.0 " \
           f"{images['sync/tool'].digest}" in lines
    assert any(line.startswith(f"failed: {hub.host}/sync/ghost:1.0 -> ") and "MANIFEST_UNKNOWN" in line
               for line in lines)
    assert lines[-1].startswith("3 image(s) in 3 section(s): 2 copied, 1 failed; ")
    assert "[app] " in done.stderr  # progress per section on stderr
    assert inspect_raw(f"{ecr.registry.host}/mirror/sync/app:1.0", ecr.registry.credentials) == \
        images["sync/app"].manifest
    assert inspect_raw(f"{open_registry.host}/mirror/sync/tool:1.0") == images["sync/tool"].manifest
    rows = TrackingStore(f"sqlite:///{db}").history()
    assert sorted((r["section"], r["status"]) for r in rows) == [("app", "copied"), ("ghost", "failed"),
                                                                 ("tool", "copied")]
    assert len({r["run_id"] for r in rows}) == 1 and rows[0]["run_id"].startswith("cli__")
    assert {r["dag_id"] for r in rows} == {"dmi_mirror"} and rows[0]["target_kind"] in ("ecr", "registry")

    hub.reset()
    again = dmi("sync", "--json", "--section", "app", "--section", "tool", str(config), env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(again.stdout)
    assert [(s["section"], [o["status"] for o in s["outcomes"]]) for s in report["sections"]] == [
        ("app", ["unchanged"]), ("tool", ["unchanged"])]
    assert report["sections"][0]["results"][0]["target_digest"] == images["sync/app"].digest
    assert hub.count("GET", "manifest") == 0 and hub.count("GET", "blob") == 0  # HEADs only
    assert len(TrackingStore(f"sqlite:///{db}").history()) == 5

    dry = dmi("sync", "--dry-run", "--force", "--no-history", "--section", "app", str(config), env=env)
    assert dry.returncode == 0 and dry.stdout.splitlines()[0].startswith("dry-run: ")
    assert len(TrackingStore(f"sqlite:///{db}").history()) == 5


