"""A deployment without the Image mirror pages still runs DMI: the scheduler's pools plugin (dmi_pools) is a
plugin of its own. Airflow here sees DMI the way a deployment that mounts only plugins/ does: dmi_provider on
the path, not installed (so no `airflow.plugins` entry point loads the UI anyway), and a plugins folder that
holds plugins/dmi_pools.py alone. A fresh Airflow (scheduler, LocalExecutor, SQLite) creates the `dmi_*` pool
and runs a DAG to success against a real docker-registry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from dmi_provider.config import default_pool
from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import rig_client
from tests.rig.images import ImageFactory, push
from tests.rig.stack import ROOT, AirflowStack

DIST = "airflow_provider_dmi"  # the installed metadata (entry points) and the editable install's path hook


def airflow_without_dmi_installed(root: Path) -> Path:
    """Airflow in an interpreter with every package of this one except the DMI distribution itself: a venv
    whose site-packages links to the current one's entries, DMI's dist-info and editable hook left out. A
    script, not `python -m airflow`, whose sys.path would start with the current folder (the checkout)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    ours = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p, "airflow").is_dir()))
    (theirs,) = venv.glob("lib/python*/site-packages")
    for entry in ours.iterdir():
        if DIST not in entry.name.replace("-", "_").replace(".", "_"):
            (theirs / entry.name).symlink_to(entry)
    script = venv / "bin" / "airflow"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom airflow.__main__ import main\n\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return script


def source_alone(root: Path) -> Path:
    """A folder holding dmi_provider and nothing else, for PYTHONPATH: the checkout itself may hold the
    metadata of a build (airflow_provider_dmi.egg-info, with its entry points)."""
    src = root / "src"
    src.mkdir()
    (src / "dmi_provider").symlink_to(ROOT / "dmi_provider")
    return src


def test_a_deployment_without_the_ui_plugin_creates_the_pool_and_runs(tmp_path, open_registry):
    command = [str(airflow_without_dmi_installed(tmp_path))]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(ROOT / "plugins" / "dmi_pools.py", plugins)  # dmi_image_mirror.py left out
    push(rig_client(open_registry), "pools-src/app", "1", ImageFactory(seed=31).image())
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        refresh = 1w
        source-registry = {open_registry.host}
        target = registry
        target-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        source-repository = pools-src
        project = pools-mirror
        tag = 1

        [app]
        image = app
    """))
    airflow = AirflowStack(tmp_path / "stack", f"sqlite:///{tmp_path / 'airflow.db'}", config,
                           {"AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins), "PYTHONPATH": str(source_alone(tmp_path)),
                            "DB_PATH": str(tmp_path / "tracking.db"), "AIRFLOW__CORE__PARALLELISM": "4"})
    airflow.command = command
    listed = subprocess.run([*airflow.command, "plugins", "--output", "json"], env=airflow.env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.startswith("[")]
    names = {p["name"] for p in json.loads(line)}
    assert "dmi_pools" in names and "dmi_image_mirror" not in names, names
    pool = default_pool(open_registry.host)
    airflow.start()
    try:
        assert "dmi-cards" not in airflow.api("GET", "/dmi/").text  # no pages here (the UI's own app answers)
        assert {p["name"] for p in airflow.api("GET", "/api/v2/plugins").json()["plugins"]} & {
            "dmi_pools", "dmi_image_mirror"} == {"dmi_pools"}
        assert airflow.api("GET", f"/api/v2/pools/{pool}").status_code == 404  # nobody made it beforehand

        def finished() -> dict | None:  # the DAG's first scheduled run, as the deployment starts
            runs = [r for r in airflow.runs("dmi_mirror") if r["state"] in ("success", "failed")]
            return runs[0] if runs else None

        run = airflow.wait_for("the first run of dmi_mirror", finished, timeout=300, every=2)
        assert run["state"] == "success", airflow.logs()
        made = airflow.api("GET", f"/api/v2/pools/{pool}").json()
        assert made["slots"] == 4 and made["description"].startswith("DMI: ")
        tis = airflow.api("GET", f"/api/v2/dags/dmi_mirror/dagRuns/{run['dag_run_id']}/taskInstances").json()
        assert {ti["pool"] for ti in tis["task_instances"] if ti["task_id"].endswith(".pull")} == {pool}
    finally:
        airflow.stop()
    rows = TrackingStore(f"sqlite:///{tmp_path / 'tracking.db'}").history()
    assert [(r["section"], r["status"]) for r in rows] == [("app", "copied")]
