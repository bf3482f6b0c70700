"""One client per registry host, each made from that host's one settings record."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

from dmi_provider.registry.auth import docker_config_credentials
from dmi_provider.registry.client import RegistryClient
from dmi_provider.registry.network import Network
from dmi_provider.registry.settings import HostSettings


class ClientPool:
    """Clients by host. A host without settings gets `default`'s; a host without credentials gets those of
    the docker config.json when `use_docker_config` (the CLI's habit, as docker's and skopeo's)."""

    def __init__(self, hosts: Mapping[str, HostSettings] | None = None, *, default: HostSettings | None = None,
                 use_docker_config: bool = True):
        self.hosts = dict(hosts or {})
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
                self._clients[registry] = RegistryClient(registry, self.settings(registry))
            return self._clients[registry]

    def close(self) -> None:
        for client in self._clients.values():
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
