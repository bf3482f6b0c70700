"""The Engine protocol: how bytes move from the source to the target. No Airflow import here.

An engine plans from HEAD requests (free under Docker Hub's limit), then stages, tags and transfers
what the plan says. Plans and results are plain data (registry.copy.Plan / CopyResult), so each step
can run in its own Airflow task, on another worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dmi_provider.registry.auth import Credentials, CredentialSource
from dmi_provider.registry.budget import PullBudget
from dmi_provider.registry.client import HostSettings, RetryPolicy
from dmi_provider.registry.copy import ClientPool, Copier, CopyResult, Plan
from dmi_provider.registry.locations import BlobLocations, default_cache_path
from dmi_provider.registry.network import Network
from dmi_provider.registry.pool import plain_http
from dmi_provider.registry.reference import Reference
from dmi_provider.registry.referrers import ReferrerFilter
from dmi_provider.targets.base import Endpoint

Say = Callable[[str], None]
# The latest good history row of a target reference (tracking), for engines that cannot tell from digests.
History = Callable[[str], "dict | None"]


@dataclass
class EngineSetup:
    """What every engine is built from. `endpoint` is called only when the target is first needed."""

    endpoint: Callable[[], Endpoint]
    source_registry: str
    source_credentials: Credentials | CredentialSource | None = None  # a cloud source renews its token
    source_network: Network = field(default_factory=Network)
    insecure: Sequence[str] = ()
    platforms: tuple[str, ...] = ()
    say: Say = logging.getLogger("dmi_provider.engines").info
    history: History | None = None
    docker_url: str | None = None
    docker_conn_id: str | None = None
    keep_local_images: bool = False
    workers: int = 4
    blob_cache: bool = True  # remember where blobs sit (mount hints) across runs, per machine
    # Where blobs sit, shared by a fleet of workers (tracking/fleet.py); called when the copier opens.
    locations: Callable[[], BlobLocations] | None = None
    use_docker_config: bool = False  # read ~/.docker/config.json for hosts without credentials (CLI only)
    budget: PullBudget | None = None  # the source's pull limit (registry engine)
    known_manifests: dict[str, tuple[str, bytes]] | None = None  # paid for by an earlier, deferred try
    max_pause: float = 30.0  # the longest Retry-After waited out in place; longer ones go to the caller
    referrers: ReferrerFilter = field(default_factory=ReferrerFilter)  # signatures, SBOMs … (registry engine)


class Engine(Protocol):
    name: str

    def plan(self, pairs: Sequence[tuple[Reference, Reference]], *, force: bool, dry_run: bool) -> list[Plan]:
        """HEAD source and target of each pair; what must be copied (plans with `changed`)."""

    def stage(self, plans: Sequence[Plan]) -> None:
        """Bring what is to be copied close (the docker engine pulls); nothing for a registry copy."""

    def tag(self, plans: Sequence[Plan]) -> None:
        """Name the images to copy with their target references (docker tag); nothing for a registry copy."""

    def transfer(self, plans: Sequence[Plan]) -> list[CopyResult]:
        """Write what the plans say at the target, the tag last; one result per plan."""

    def close(self) -> None: ...


def open_copier(setup: EngineSetup) -> Copier:
    """A registry-protocol copier for the setup's source and target, with their credentials."""
    endpoint = setup.endpoint()
    retry = RetryPolicy(max_pause=setup.max_pause)
    # Source and target on one host: the target's record, with the source's login when the target has none.
    same = endpoint.host == setup.source_registry
    target_login = endpoint.credentials or (setup.source_credentials if same else None) or None
    hosts = {setup.source_registry: HostSettings(setup.source_credentials or None, setup.source_network, retry),
             endpoint.host: HostSettings(target_login, endpoint.network, retry, endpoint.uploads)}
    default = HostSettings(retry=retry)
    pool = ClientPool(plain_http(setup.insecure, hosts, default), default=default,
                      use_docker_config=setup.use_docker_config)
    if setup.locations is not None:
        locations = setup.locations()
    else:
        locations = BlobLocations(default_cache_path() if setup.blob_cache else None)
    return Copier(pool, workers=setup.workers, progress=setup.say, locations=locations, budget=setup.budget,
                  known=setup.known_manifests or {}, referrers=setup.referrers)

