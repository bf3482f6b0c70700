"""A Celery fleet on this machine: Debian's redis-server as the broker and `airflow celery worker`
processes, each with its own name (task_instance.hostname), queues and Docker daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.rig.process import Service, free_port
from tests.rig.stack import AIRFLOW, AirflowStack

WORKER_NAME = "DMI_TEST_WORKER_NAME"


def worker_hostname() -> str:
    """`[core] hostname_callable` of the test workers: both run on one machine, so each says its own name."""
    return os.environ.get(WORKER_NAME) or socket.getfqdn()


@dataclass
class Redis:
    root: Path
    port: int = 0
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, root: Path) -> Redis:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self = cls(root, free_port())
        root.mkdir(parents=True, exist_ok=True)
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(root), "--protected-mode", "yes"]
        self.service = Service("redis", argv, root / "redis.log")

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        self.service.start(ready, timeout=30)
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop()


def celery_env(broker: str, result_backend: str) -> dict[str, str]:
    """What turns the stack's executor into Celery (the scheduler queues, workers run)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.rig.fleet.worker_hostname",
    }


class Worker(Service):
    """`airflow celery worker` named `name`, serving `queues`; killed as a machine dies (SIGKILL, every
    process of it at once)."""

    def __init__(self, stack: AirflowStack, name: str, queues: str, env: dict[str, str], concurrency: int = 4):
        argv = [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", queues,
                "--concurrency", str(concurrency), "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        super().__init__(f"worker {name}", argv, stack.root / f"worker-{name}.log",
                         {**stack.env, WORKER_NAME: name, **env})
        self.worker_name = name

    def start_ready(self, timeout: float = 120) -> Worker:
        self.start(lambda: " ready." in self.log.read_text(errors="replace"), timeout=timeout)
        return self

    def kill(self) -> float:
        """SIGKILL the worker and every process it started; returns when that happened (time.time())."""
        assert self.proc is not None
        pids = _group(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGKILL)
        at = time.time()
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        return at


def _group(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
