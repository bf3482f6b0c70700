"""A real Airflow deployment on this machine: api-server, scheduler, dag-processor and triggerer as
processes, LocalExecutor, PostgreSQL for the metadata, the repository's dags/ and plugins/ folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.rig.process import Service, free_port

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
USER, PASSWORD = "admin", "dmi-stack-admin-pass"


class AirflowStack:
    def __init__(self, root: Path, metadata_url: str, config: Path, env: dict[str, str],
                 pools: dict[str, int] | None = None, port: int | None = None,
                 users: dict[str, tuple[str, str]] | None = None):
        self.root = root
        self.pools = pools or {}  # made with `airflow pools set` before the services start
        self.port = port or free_port()
        # name -> (simple auth manager role, password)
        self.users = {USER: ("admin", PASSWORD), **(users or {})}
        passwords = root / "passwords.json"
        root.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({name: password for name, (_role, password) in self.users.items()}))
        self.env = {
            "PATH": os.environ["PATH"], "HOME": str(root), "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _p) in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "dmi-stack-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "DMI_CONFIG": str(config),
            **env,
        }
        self.command = [AIRFLOW]  # how to run Airflow: another interpreter's `python -m airflow` too
        self.services: list[Service] = []
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AirflowStack:
        done = subprocess.run([*self.command, "db", "migrate"], env=self.env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        for name, slots in self.pools.items():
            subprocess.run([*self.command, "pools", "set", name, str(slots), "made by the test"], env=self.env,
                           check=True, capture_output=True, timeout=300)
        api = Service("api-server", [*self.command, "api-server", "--port", str(self.port), "--host", "127.0.0.1",
                                     "--workers", "1"], self.root / "api-server.log", self.env)
        api.start(lambda: httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200,
                  timeout=180)
        self.services.append(api)
        for name in ("scheduler", "dag-processor", "triggerer"):
            service = Service(name, [*self.command, name], self.root / f"{name}.log", self.env)
            service.start(lambda s=service: s.proc is not None and time.sleep(1) is None, timeout=30)
            self.services.append(service)
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.tail(60)}" for s in self.services)

    # -- the REST API v2 ---------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            self._token = self.token_for(USER)
        return self._token

    def token_for(self, user: str) -> str:
        r = httpx.post(f"{self.url}/auth/token", json={"username": user, "password": self.users[user][1]},
                       timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def api(self, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kw.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kw)  # type: ignore[arg-type]

    def wait_for(self, what: str, check, timeout: float = 240, every: float = 2.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def runs(self, dag_id: str) -> list[dict]:
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        return r.json().get("dag_runs", []) if r.status_code == 200 else []

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict:
        def done() -> dict | None:
            r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            run = r.json() if r.status_code == 200 else {}
            return run if run.get("state") in ("success", "failed") else None

        return self.wait_for(f"run {dag_id}/{run_id}", done, timeout)
