"""What DMI knows about one registry host, in one record: its login, how it is reached, how hard to retry,
how it takes blobs. A pool of clients holds one record per host (regclient's `config.Host`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from dmi_provider.registry.auth import Credentials, CredentialSource
from dmi_provider.registry.network import Network


@dataclass(frozen=True)
class RetryPolicy:
    """`max_pause`: the longest Retry-After waited out in place; a longer one is the caller's (a task
    defers instead of holding its worker)."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 30.0
    total: float = 300.0
    max_pause: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, outage: bool = False) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt, 30))
        if outage:  # equal jitter: the waits do grow, up to max_delay, while the registry is down
            return ceiling / 2 + random.uniform(0, ceiling / 2)
        return random.uniform(0, ceiling)  # full jitter


@dataclass(frozen=True)
class Uploads:
    """How a registry takes blobs, a property of the registry (its target): `chunk` 0 sends each blob as one
    streaming PUT (GAR has no chunked uploads); N sends blobs larger than N as PATCHes of N bytes and a final
    PUT (ACR and proxies that refuse large bodies). `mounts`: ask for cross-repository mounts (GAR never
    fulfils them: asking only costs a round trip)."""

    chunk: int = 0
    mounts: bool = True


@dataclass(frozen=True)
class HostSettings:
    """One registry host's settings. `credentials` may be a source asked each time (a cloud's token
    expires); `max_transfers` bounds the blob transfers running against the host at once."""

    credentials: Credentials | CredentialSource | None = None
    network: Network = field(default_factory=Network)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    uploads: Uploads = field(default_factory=Uploads)
    timeout: float = 60.0
    max_transfers: int = 6


def insecure(retry: RetryPolicy | None = None) -> HostSettings:
    """A plain-HTTP host (a loopback test registry, an `insecure-registries` entry)."""
    return HostSettings(network=Network(insecure=True), retry=retry or RetryPolicy())
