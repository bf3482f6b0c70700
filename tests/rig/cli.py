"""The `dmi` command as a user runs it: a clean environment (no docker config, no home), the code under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DMI = str(Path(sys.executable).with_name("dmi"))


def dmi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "DOCKER_CONFIG": "/nonexistent",
            "AIRFLOW_HOME": "/tmp/dmi-cli-airflow-home",
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # the code under test, not an install
    return subprocess.run([DMI, *args], capture_output=True, text=True, timeout=300, env=base | (env or {}))
