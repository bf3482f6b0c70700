"""moto's ECR API server, the ECR stand-in registry, and a real dockerd."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.rig.process import Service, free_port
from tests.rig.registry import Registry

MOTO_ACCOUNT = "123456789012"
MOTO_REGION = "us-east-1"


@dataclass
class Moto:
    root: Path
    port: int = 0
    service: Service | None = None
    env: dict[str, str] = field(default_factory=dict)  # e.g. INITIAL_NO_AUTH_ACTION_COUNT: check signatures

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Moto:
        self.port = free_port()
        moto_server = Path(sys.executable).with_name("moto_server")
        self.service = Service("moto_server", [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
                               self.root / "moto.log", self.env)
        self.service.start(lambda: httpx.get(f"{self.endpoint}/moto-api/", timeout=1).status_code < 500)
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop()


@dataclass
class EcrStandIn:
    """moto answers the ECR API; a registry whose htpasswd user is `AWS` with moto's token password
    stands in for the data plane."""

    moto: Moto
    registry: Registry
    account: str = MOTO_ACCOUNT
    region: str = MOTO_REGION

    @classmethod
    def start(cls, root: Path) -> EcrStandIn:
        moto = Moto(root / "moto").start()
        registry = Registry("ecr", root / "ecr-registry", auth="htpasswd",
                            users={"AWS": f"{MOTO_ACCOUNT}-auth-token"}).start()
        return cls(moto, registry)

    def boto3_client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "ecr", region_name=self.region, endpoint_url=self.moto.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    def stop(self) -> None:
        self.registry.stop()
        self.moto.stop()


@dataclass
class Dockerd:
    """dockerd with vfs storage, no bridge or iptables, and its own socket and data root."""

    root: Path
    service: Service | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @classmethod
    def start(cls) -> Dockerd:
        # Unix socket paths are limited to 108 bytes: keep the root short.
        root = Path(tempfile.mkdtemp(prefix="dmi-dockerd-", dir="/tmp"))
        self = cls(root)
        argv = [
            "dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
            f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'docker.pid'}",
            "-H", self.base_url, "--containerd-namespace=dmi-test", "--containerd-plugins-namespace=dmi-test-p",
        ]
        self.service = Service("dockerd", argv, root / "dockerd.log")

        def ready() -> bool:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(transport=transport, timeout=2) as client:
                return client.get("http://docker/_ping").text == "OK"

        self.service.start(ready, timeout=90)
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Postgres:
    """A PostgreSQL server of its own (initdb in a temp folder), run as the `postgres` user."""

    root: Path
    port: int = 0
    service: Service | None = None
    password: str = "dmi-test-pass"
    _psql: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://dmi:{self.password}@127.0.0.1:{self.port}/dmi"

    @classmethod
    def start(cls) -> Postgres:
        import glob
        import subprocess

        bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        root = Path(tempfile.mkdtemp(prefix="dmi-pg-", dir="/tmp"))
        shutil.chown(root, "postgres", "postgres")
        self = cls(root, free_port())
        pwfile = root / "pw"
        pwfile.write_text(self.password)
        shutil.chown(pwfile, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_pg, f"{bindir}/initdb", "-D", str(root / "data"), "-U", "dmi", "--pwfile", str(pwfile),
                        "-A", "scram-sha-256", "--no-sync"], check=True, capture_output=True)
        self.service = Service("postgres", [*as_pg, f"{bindir}/postgres", "-D", str(root / "data"), "-h", "127.0.0.1",
                                            "-p", str(self.port), "-k", str(root), "-c", "fsync=off"],
                               root / "postgres.log")
        env = {"PGPASSWORD": self.password}
        psql = [f"{bindir}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dmi", "-d", "postgres", "-tAc"]

        def ready() -> bool:
            done = subprocess.run([*psql, "select 1"], capture_output=True, env={**os.environ, **env}, timeout=5)
            return done.returncode == 0

        self.service.start(ready, timeout=60)
        self._psql = psql
        self.database("dmi")
        return self

    def database(self, name: str) -> str:
        """Create a fresh database; return its SQLAlchemy URL."""
        import subprocess

        subprocess.run([*self._psql, f"drop database if exists {name}"], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": self.password})
        subprocess.run([*self._psql, f"create database {name}"], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": self.password})
        return f"postgresql+psycopg2://dmi:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        shutil.rmtree(self.root, ignore_errors=True)
