"""DMI's own connection type for container registries: host, login, password, and how to reach the
registry (proxy, CA bundle, plain HTTP). Its Test button pings /v2/, logs in and fetches a pull token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from dmi_provider.errors import DmiError
from dmi_provider.hooks.connections import REGISTRY_CONN_TYPE, RegistryLogin, login_from
from dmi_provider.registry.client import HostSettings, RegistryClient, RetryPolicy, pull_scope
from dmi_provider.registry.network import Network
from dmi_provider.registry.reference import DOCKER_HUB, InvalidReference, check_host

TEST_REPOSITORY = "library/alpine"  # a scope to ask a token for when the connection names none


class ContainerRegistryHook(BaseHook):
    """A registry's login for DMI (`source-conn-id` / `target-conn-id`).

    :param registry_conn_id: a connection of type ``container_registry`` (the docker provider's ``docker``
        type and generic connections with login and password work too)
    """

    conn_name_attr = "registry_conn_id"
    default_conn_name = "container_registry_default"
    conn_type = REGISTRY_CONN_TYPE
    hook_name = "Container Registry (DMI)"

    def __init__(self, registry_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.registry_conn_id = registry_conn_id

    def registry(self) -> tuple[str, RegistryLogin, str]:
        """(host[:port], login and network, repository to test with) from the connection."""
        conn = self.get_connection(self.registry_conn_id)
        login = login_from(conn, self.registry_conn_id)
        raw = (conn.host or "").strip()
        parts = urlsplit(raw if "://" in raw else f"//{raw}")
        if not parts.hostname:
            raise DmiError(f"connection {self.registry_conn_id!r} has no host: set the registry, e.g. "
                           "registry.example.com or registry.local:5000")
        host = check_host(f"{parts.hostname}:{conn.port or parts.port}" if conn.port or parts.port
                          else parts.hostname)
        if parts.scheme == "http":  # the URL itself asks for plain HTTP, as the docker provider's form allows
            login = RegistryLogin(login.credentials, login.network.merge(Network(insecure=True)))
        repository = str(conn.extra_dejson.get("test_repository") or parts.path.strip("/") or TEST_REPOSITORY)
        return host, login, repository

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's Test button: one line saying what works, or what failed."""
        try:
            host, login, repository = self.registry()
            client = RegistryClient(host, HostSettings(login.credentials, login.network, RetryPolicy(attempts=1),
                                                       timeout=20))
            try:
                proven = client.check(pull_scope(repository))
            finally:
                client.close()
        except (DmiError, InvalidReference) as exc:
            return False, str(exc)
        hub = " (Docker Hub)" if host == DOCKER_HUB else ""
        return True, f"{host}{hub}: the registry answers at {client.base_url}; {proven}"
