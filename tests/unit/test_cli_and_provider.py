from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import dmi_provider

ROOT = Path(__file__).resolve().parents[2]
DMI = Path(sys.executable).with_name("dmi")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DMI), *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_validate_the_sample_config():
    done = run("validate", "config.ini")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("config.ini: 3 sections in 2 DAGs (cloud AWS,")
    assert "DAG dmi_mirror  schedule: every 1w (7 days, 0:00:00)" in out
    assert "[aws/proxyv2] docker.io/istio/proxyv2:1.7.0 -> <ecr>/istio/proxyv2:1.7.0" in out
    assert "DAG dmi_mirror_1d  schedule: every 1d (1 day, 0:00:00)" in out
    assert "[alpine] docker.io/library/alpine:3.20 -> <ecr>/mirror/alpine:3.20" in out


def test_validate_uses_the_legacy_environment():
    done = run("validate", "config.ini", env={"AWS_ACCOUNT": "123456789012", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert "-> 123456789012.dkr.ecr.eu-west-1.amazonaws.com/istio/proxyv2:1.7.0" in done.stdout


def test_validate_json():
    done = run("validate", "--json", "config.ini")
    data = json.loads(done.stdout)
    source = data["dags"]["dmi_mirror_1d"]["sections"][0]["source"]
    assert (source["registry"], source["repository"]) == ("docker.io", "library/alpine")
    assert data["dags"]["dmi_mirror"]["schedule"].startswith("every 1w")


def test_validate_bad_config_prints_every_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[DEFAULT]\nrefresh = 2y\n[a]\nimage = A\ntag = 1\nproject = p\ncolour = blue\n")
    done = run("validate", str(bad), env={"CLOUD": "IBM"})
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "4 problems in the mirror configuration:"
    assert lines[1] == ("  environment: CLOUD = 'IBM': expected one of: AWS, GOOGLE, GCP, GKE, AZURE (it sets the "
                        "target of sections that set none)")
    assert lines[2].startswith(f"  {bad}:2: section 'DEFAULT': refresh = '2y': 0 (once) or N followed by m, h, d or w")
    assert lines[3].startswith(f"  {bad}:4: section 'a': image = 'A': 'A' is not a repository path")  # in file order
    assert lines[4].startswith(f"  {bad}:7: section 'a': colour = 'blue': unknown key;")


def test_validate_missing_file(tmp_path):
    done = run("validate", str(tmp_path / "nope.ini"))
    assert done.returncode == 2
    assert "nope.ini: no such file" in done.stderr


def test_help_lists_commands_and_python_m_works():
    done = subprocess.run([sys.executable, "-m", "dmi_provider", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert "validate" in done.stdout and "keys" in done.stdout
    keys = run("keys").stdout
    assert "insecure-registries" in keys and "lifecycle-policy" in keys


def test_readme_documents_every_key():
    from dmi_provider.spec import KEYS

    readme = (ROOT / "README.md").read_text()
    missing = [key for key in KEYS if f"`{key}`" not in readme]
    assert not missing, f"README does not document: {missing}"
    for variable in ("AWS_ACCOUNT", "AWS_DEFAULT_REGION", "CLOUD", "DB_PATH"):
        assert f"`{variable}`" in readme


def test_provider_entry_point_and_airflow_sees_it():
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("dmi_provider")]
    assert len(found) == 1
    info = found[0].load()()
    assert info == dmi_provider.get_provider_info()
    assert info["package-name"] == "airflow-provider-dmi"
    assert info["versions"] == [dmi_provider.__version__]

    # Airflow validates provider info against its schema when it discovers providers.
    code = ("from airflow.providers_manager import ProvidersManager as P; "
            "p = P().providers['airflow-provider-dmi']; print(p.version, p.data['name'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": "/tmp/dmi-provider-check"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{dmi_provider.__version__} DMI (Docker Mirror Images)"


def test_the_scheduler_plugin_is_apart_from_the_pages():
    """The pools listener hangs on a plugin of its own (every deployment needs it, pages or not); both are
    declared in the provider info, and its other connection types only as integrations' tags."""
    from importlib import import_module

    from dmi_provider import listeners

    info = dmi_provider.get_provider_info()
    classes = {}
    for plugin in info["plugins"]:
        module, _, name = plugin["plugin-class"].rpartition(".")
        classes[plugin["name"]] = getattr(import_module(module), name)
        assert classes[plugin["name"]].name == plugin["name"]
    assert classes["dmi_pools"].listeners == [listeners] and not classes["dmi_image_mirror"].listeners
    assert not getattr(classes["dmi_pools"], "fastapi_apps", None)
    assert [c["connection-type"] for c in info["connection-types"]] == ["container_registry"]  # DMI's own only
    tags = {t for i in info["integrations"] for t in i.get("tags", ())}
    assert {"connection-type:google_cloud_platform", "connection-type:azure",
            "connection-type:azure_container_registry", "connection-type:aws"} <= tags
    folder = (ROOT / "plugins" / "dmi_pools.py").read_text()
    assert "from dmi_provider.plugins.scheduler import DmiPoolsPlugin" in folder


def test_the_pools_listener_leaves_other_dags_at_once():
    from types import SimpleNamespace

    from dmi_provider import listeners

    class Untouchable:  # any attribute but dag_id would be work the scheduler pays for every run
        dag_id = "someone_elses_dag"

        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"read {name}")

    listeners.on_dag_run_running(Untouchable(), "started")
    tasks = [SimpleNamespace(pool=p) for p in ("default_pool", "dmi_docker_io", "dmi_docker_io", "mine")]
    run = SimpleNamespace(dag_id="dmi_mirror_1w", dag=SimpleNamespace(tasks=tasks))
    assert listeners.pools_of(run) == {"dmi_docker_io", "mine"}
    assert listeners.pools_of(SimpleNamespace(dag=SimpleNamespace(tasks=tasks[:1]))) == set()


def test_plain_layers_never_import_airflow():
    code = ("import sys, dmi_provider.config, dmi_provider.cli, dmi_provider.registry.reference; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
