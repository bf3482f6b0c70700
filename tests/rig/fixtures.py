"""Fixtures that start real services on free loopback ports. A test never skips for a missing
service: if one cannot start, the fixture fails with its log. tests/integration and tests/system take them
from here (their conftest.py); tests/unit never does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rig.airflow import AirflowEnv
from tests.rig.azure import AzureStandIn
from tests.rig.client import RigClient
from tests.rig.gcp import GoogleStandIn
from tests.rig.proxy import Proxy
from tests.rig.registry import Registry
from tests.rig.services import MOTO_REGION, Dockerd, EcrStandIn, Postgres
from tests.rig.tls import LocalCA

HUB_USER = ("hubuser", "hub-secret-pass")
BASIC_USER = ("mirror", "basic-secret-pass")
TLS_USER = ("mirror", "tls-secret-pass")


@pytest.fixture(scope="session")
def open_registry(rig_root: Path) -> Iterator[Registry]:
    registry = Registry("open", rig_root / "open").start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def basic_registry(rig_root: Path) -> Iterator[Registry]:
    registry = Registry("basic", rig_root / "basic", auth="htpasswd", users=dict([BASIC_USER])).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def hub_registry(rig_root: Path) -> Iterator[Registry]:
    """Docker Hub's stand-in: token auth (anonymous pull tokens) behind `hub` below."""
    registry = Registry("hub", rig_root / "hub", auth="token", users=dict([HUB_USER])).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def test_ca(rig_root: Path) -> LocalCA:
    """A CA the tests make; nothing trusts it unless told to."""
    return LocalCA(rig_root / "ca")


@pytest.fixture(scope="session")
def tls_registry(rig_root: Path, test_ca: LocalCA) -> Iterator[Registry]:
    """An HTTPS registry (basic auth) whose certificate comes from `test_ca`."""
    registry = Registry("tls", rig_root / "tls", auth="htpasswd", users=dict([TLS_USER]),
                        tls=test_ca.server("tls-registry"), ca=test_ca.path).start()
    yield registry
    registry.stop()


@pytest.fixture
def hub(hub_registry: Registry) -> Iterator[Proxy]:
    """The front door of the Docker Hub stand-in: counts requests and sends rate-limit headers."""
    proxy = Proxy(hub_registry.url, ratelimit=100).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def make(registry: Registry, **kw: object) -> Proxy:
        proxy = Proxy(registry.url, **kw).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="session")
def ecr(rig_root: Path) -> Iterator[EcrStandIn]:
    stand_in = EcrStandIn.start(rig_root / "ecr")
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    daemon = Dockerd.start()
    yield daemon
    daemon.stop()


def rig_client(registry: Registry | Proxy, credentials: tuple[str, str] | None = None) -> RigClient:
    return RigClient(registry.url, credentials, getattr(registry, "ca", None))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    return AirflowEnv(tmp_path_factory.mktemp("airflow"))


@pytest.fixture
def ecr_env(ecr: EcrStandIn, tmp_path: Path) -> dict[str, str]:
    """Environment of an Airflow run that mirrors into the ECR stand-in (AWS connection to moto)."""
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": MOTO_REGION, "endpoint_url": ecr.moto.endpoint}}
    return {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn), "AWS_DEFAULT_REGION": MOTO_REGION,
            "AWS_ACCOUNT": ecr.account, "DB_PATH": str(tmp_path / "tracking.db")}


@pytest.fixture(scope="session")
def google(rig_root: Path) -> Iterator[GoogleStandIn]:
    """Google's stand-in: an OAuth token endpoint, the Artifact Registry API, a GAR data plane."""
    stand_in = GoogleStandIn(rig_root / "google").start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="session")
def azure(rig_root: Path, test_ca: LocalCA) -> Iterator[AzureStandIn]:
    """Azure's stand-in: Entra ID (HTTPS, the test CA) and an ACR front with its OAuth2 endpoints."""
    stand_in = AzureStandIn(rig_root / "azure", test_ca).start()
    yield stand_in
    stand_in.stop()


def gcp_connection(google: GoogleStandIn, **extra: object) -> str:
    """An Airflow google_cloud_platform connection (JSON, for AIRFLOW_CONN_*) with the stand-in's key."""
    return json.dumps({"conn_type": "google_cloud_platform",
                       "extra": {"keyfile_dict": json.dumps(google.key_info()), **extra}})


def azure_connection(azure: AzureStandIn, principal: tuple[str, str], **extra: object) -> str:
    """An Airflow `azure` connection (JSON) of a service principal, Entra ID being the stand-in."""
    assert azure.entra is not None
    return json.dumps({"conn_type": "azure", "login": principal[0], "password": principal[1],
                       "extra": {"tenantId": azure.entra.tenant, "authority_host": azure.entra.authority,
                                 "ca_bundle": str(azure.ca.path), **extra}})
