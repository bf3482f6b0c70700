"""A real Airflow on SQLite whose DAG folder holds dags/dmi_mirror.py; DAGs run with dag.test()
in a fresh interpreter each (tests.rig.airflow_run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class AirflowEnv:
    """A real Airflow (SQLite metadata DB) whose DAG folder holds dags/dmi_mirror.py."""

    def __init__(self, root: Path):
        self.root = root
        self.dags = root / "dags"
        self.dags.mkdir(parents=True)
        shutil.copy(ROOT / "dags" / "dmi_mirror.py", self.dags / "dmi_mirror.py")
        self.env = {
            "PATH": os.environ["PATH"], "HOME": str(root), "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": str(root / "home"), "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    def run(self, dag_id: str | None, config: Path, conf: dict | None = None, env: dict[str, str] | None = None,
            ) -> dict:
        argv = [sys.executable, "-m", "tests.rig.airflow_run"] + ([dag_id] if dag_id else [])
        if conf is not None:
            argv.append(json.dumps(conf))
        done = subprocess.run(argv, env=self.env | {"DMI_CONFIG": str(config)} | (env or {}), capture_output=True,
                              text=True, timeout=900, cwd=ROOT)
        # A run's result is its DMI-RESULT line (a log line may also start with "{"); a listing prints JSON.
        lines = ([ln for ln in done.stdout.splitlines() if ln.startswith("DMI-RESULT ")]
                 or [ln for ln in done.stdout.splitlines() if ln.startswith("{")])
        if not lines:
            raise AssertionError(f"airflow run failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                                 f"{done.stderr[-4000:]}")
        result = json.loads(lines[-1].removeprefix("DMI-RESULT "))
        result["log"] = done.stdout + done.stderr
        return result
