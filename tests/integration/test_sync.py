"""`dmi sync CONFIG`: a whole config in one process, as the DAGs would mirror it, with their history rows."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dmi_provider.tracking.store import TrackingStore
from tests.rig.cli import dmi
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.process import free_port
from tests.rig.services import MOTO_REGION
from tests.rig.skopeo import inspect_raw
from tests.unit.test_tracking import hold


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




# -- issue 26, item 11: the tracking database locked or unreachable ---------------------------------------------
def two_sections(tmp_path, open_registry, factory, repo_name) -> tuple[Path, dict[str, str]]:
    """A config of two sections, source and target the open registry; their target references by section."""
    sources = {"one": repo_name("src"), "two": repo_name("src")}
    for repo in sources.values():
        push(rig_client(open_registry), repo, "1.0", factory.image())
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        source-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        target = registry
        target-registry = {open_registry.host}
        project = mirror
        tag = 1.0
    """) + "".join(f"\n[{name}]\nimage = {repo}\n" for name, repo in sources.items()))
    return config, {name: f"{open_registry.host}/mirror/{repo}:1.0" for name, repo in sources.items()}


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_locked_database_leaves_every_sections_report_and_exits_3(tmp_path, open_registry, factory, repo_name,
                                                                     mode):
    config, targets = two_sections(tmp_path, open_registry, factory, repo_name)
    db = tmp_path / "tracking.db"
    TrackingStore(f"sqlite:///{db}").migrate()
    holder = hold(db, mode)  # another process's write transaction, kept open for the whole sync
    try:
        done = dmi("sync", str(config), env={"DB_PATH": str(db), "DMI_TRACKING_BUSY_TIMEOUT": "1"})
        as_json = dmi("sync", "--json", "--section", "one", str(config),
                      env={"DB_PATH": str(db), "DMI_TRACKING_BUSY_TIMEOUT": "1"})
    finally:
        holder.rollback()
        holder.close()
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    why = "database is locked (another process held it for longer than the busy timeout, 1s: DMI_TRACKING_BUSY_TIMEOUT)"
    lines = done.stdout.splitlines()
    for target in targets.values():  # copied all the same, and each section says its history is missing
        assert any(line.startswith("copied: ") and f" -> {target} sha256:" in line
                   and line.endswith(f"; history not recorded: {why}") for line in lines), lines
        assert inspect_raw(target)
    assert lines[-1].startswith("2 image(s) in 2 section(s): 2 copied; ")
    assert lines[-1].endswith("; history not recorded for 2 section(s)")
    assert f"dmi sync: history not recorded in sqlite:///{db}: {why}" in done.stderr.splitlines()
    assert "Traceback" not in done.stderr and done.stderr.count("database is locked") == 1
    assert as_json.returncode == 3
    (section,) = json.loads(as_json.stdout)["sections"]
    assert section["history_error"] == why and [o["status"] for o in section["outcomes"]] == ["unchanged"]
    assert TrackingStore(f"sqlite:///{db}").history() == []
    rerun = dmi("sync", str(config), env={"DB_PATH": str(db)})  # the lock gone: recorded, exit 0
    assert rerun.returncode == 0 and "history not recorded" not in rerun.stdout + rerun.stderr
    assert len(TrackingStore(f"sqlite:///{db}").history()) == 2


def test_an_unreachable_database_leaves_the_report_without_its_password(tmp_path, open_registry, factory,
                                                                         repo_name):
    config, _targets = two_sections(tmp_path, open_registry, factory, repo_name)
    closed = free_port()
    done = dmi("sync", "--db", f"postgresql+psycopg2://dmi:pg-secret-pw@127.0.0.1:{closed}/dmi", str(config))
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    why = f'connection to server at "127.0.0.1", port {closed} failed: Connection refused'
    lines = done.stdout.splitlines()
    assert sum(line.startswith("copied: ") and line.endswith(f"; history not recorded: {why}") for line in lines) == 2
    assert (f"dmi sync: history not recorded in postgresql+psycopg2://dmi:***@127.0.0.1:{closed}/dmi: {why}"
            in done.stderr.splitlines())
    assert "pg-secret-pw" not in done.stdout + done.stderr and "Traceback" not in done.stderr
