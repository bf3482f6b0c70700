"""One client per registry host, each made from that host's one settings record."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

from dmi_provider.registry.auth import docker_config_credentials
from dmi_provider.registry.client import RegistryClient
from dmi_provider.registry.network import Network
from dmi_provider.registry.settings import HostSettings


class SharedClients:
    """Clients shared by many copies of one run (the sections a planning task HEADs at once): one client, one
    connection pool and one token cache per host and login, instead of one per section."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, HostSettings], RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, registry: str, settings: HostSettings) -> RegistryClient | None:
        """The shared client, or None (then the copy makes and closes its own): a login that renews itself (a
        cloud's, one per section) or settings that cannot be compared are not shared."""
        if callable(settings.credentials):
            return None
        try:
            key = (registry, settings)
            hash(key)
        except TypeError:
            return None
        with self._lock:
            if key not in self._clients:
                self._clients[key] = RegistryClient(registry, settings)
            return self._clients[key]

    def owns(self, client: RegistryClient) -> bool:
        with self._lock:
            return any(c is client for c in self._clients.values())

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            client.close()


class ClientPool:
    """Clients by host. A host without settings gets `default`'s; a host without credentials gets those of
    the docker config.json when `use_docker_config` (the CLI's habit, as docker's and skopeo's)."""

    def __init__(self, hosts: Mapping[str, HostSettings] | None = None, *, default: HostSettings | None = None,
                 use_docker_config: bool = True, shared: SharedClients | None = None):
        self.hosts = dict(hosts or {})
        self.shared = shared  # its clients are the run's: this pool does not close them
        self.default = default or HostSettings()
        self.use_docker_config = use_docker_config
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def settings(self, registry: str) -> HostSettings:
        settings = self.hosts.get(registry, self.default)
        if settings.credentials is None and self.use_docker_config:
            settings = replace(settings, credentials=docker_config_credentials(registry))
        return settings

    def get(self, registry: str) -> RegistryClient:
        with self._lock:
            if registry not in self._clients:
                settings = self.settings(registry)
                client = self.shared.get(registry, settings) if self.shared is not None else None
                self._clients[registry] = client or RegistryClient(registry, settings)
            return self._clients[registry]

    def close(self) -> None:
        for client in self._clients.values():
            if self.shared is None or not self.shared.owns(client):
                client.close()


def plain_http(hosts: Iterable[str], settings: Mapping[str, HostSettings] | None = None,
               default: HostSettings | None = None) -> dict[str, HostSettings]:
    """`settings` with plain HTTP for each of `hosts` (a list like insecure-registries or --insecure): a host
    without settings of its own starts from `default`."""
    out = dict(settings or {})
    for host in hosts:
        base = out.get(host, default or HostSettings())
        out[host] = replace(base, network=base.network.merge(Network(insecure=True)))
    return out
