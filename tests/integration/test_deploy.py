"""What can be checked of the deployment files here (no container engine runs images on these machines)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_dockerfile_installs_the_wheel_that_pip_wheel_builds(tmp_path):
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.2$", text, re.M)
    assert text.count("FROM apache/airflow:${AIRFLOW_VERSION}") == 2
    assert "pip wheel --no-deps --wheel-dir /home/airflow/wheels /home/airflow/dmi-src" in text
    assert "airflow_provider_dmi-*.whl)[postgres]" in text
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("airflow_provider_dmi-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    for module in ("dmi_provider/dag_factory.py", "dmi_provider/plugins/history.py",
                   "dmi_provider/registry/copy.py", "dmi_provider/tracking/store.py",
                   "dmi_provider/plugins/templates/state.html", "dmi_provider/plugins/templates/charts.html",
                   "dmi_provider/plugins/static/dmi.css", "dmi_provider/plugins/static/dmi.js"):
        assert module in names
    assert not any(n.startswith("tests/") for n in names)
    assert "provider_info = dmi_provider:get_provider_info" in entry_points
    assert "dmi_image_mirror = dmi_provider.plugins.history:DmiHistoryPlugin" in entry_points
    assert "dmi_pools = dmi_provider.plugins.scheduler:DmiPoolsPlugin" in entry_points
    assert "dmi = dmi_provider.cli:main" in entry_points
    assert "Requires-Dist: apache-airflow<3.4,>=3.3.2" in metadata
    assert 'psycopg2-binary>=2.9; extra == "postgres"' in metadata
