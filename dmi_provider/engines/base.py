"""The Engine protocol: how bytes move from the source to the target. No Airflow import here.

An engine plans from HEAD requests (free under Docker Hub's limit), then stages, tags and transfers
what the plan says. Plans and results are plain data (registry.copy.Plan / CopyResult), so each step
can run in its own Airflow task, on another worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from dmi_provider.hooks.connections import RegistryLogin
from dmi_provider.registry.budget import Ledger, PullBudget
from dmi_provider.registry.client import HostSettings, RetryPolicy
from dmi_provider.registry.copy import ClientPool, Copier, CopyResult, Plan
from dmi_provider.registry.gate import Gate
from dmi_provider.registry.locations import BlobLocations, default_cache_path
from dmi_provider.registry.pool import SharedClients, plain_http
from dmi_provider.registry.reference import Reference
from dmi_provider.registry.referrers import ReferrerFilter, TagListings
from dmi_provider.spec import MirrorSpec
from dmi_provider.targets.base import Endpoint

Say = Callable[[str], None]
# The latest good history row of a target reference (tracking), for engines that cannot tell from digests.
History = Callable[[str], "dict | None"]
TASK_MAX_PAUSE = 5.0  # a task defers rather than sleeping through a longer Retry-After


@dataclass
class RunHooks:
    """What a caller lends a run: where progress goes, and what it shares with other runs."""

    say: Say = logging.getLogger("dmi_provider.engines").info
    history: History | None = None  # the latest good history row of a target (the docker engine asks)
    ledger: Ledger | None = None  # where runs at once claim the source's pulls
    # Where blobs sit, shared by a fleet of workers (tracking/fleet.py); called when the copier opens.
    locations: Callable[[], BlobLocations] | None = None
    known: dict[str, tuple[str, bytes]] | None = None  # manifests an earlier, deferred try paid for
    max_pause: float = TASK_MAX_PAUSE  # the longest Retry-After waited out in place; longer ones go to the caller
    # Source tag listings (registry, repository) -> tags, shared by the sections of one run (referrer lookups).
    tag_lists: TagListings = field(default_factory=TagListings)
    clients: SharedClients | None = None  # registry clients shared by the sections of a run (planning)


@dataclass
class Tuning:
    """How the copier works where a caller knows better than the defaults (`dmi copy`'s flags)."""

    workers: int = 4
    blob_cache: bool = True  # remember where blobs sit (mount hints) across runs, per machine
    use_docker_config: bool = False  # ~/.docker/config.json for hosts without credentials (CLI only)


@dataclass
class EngineSetup:
    """What every engine is built from: the section's spec (platforms, referrers, plain-HTTP hosts, the
    daemon's settings, the pull reserve), the source's login, the target's endpoint (called only when the
    target is first needed), and what the caller lends."""

    endpoint: Callable[[], Endpoint]
    source: RegistryLogin = field(default_factory=RegistryLogin)  # a cloud source renews its token
    spec: MirrorSpec = field(default_factory=MirrorSpec)
    hooks: RunHooks = field(default_factory=RunHooks)
    tuning: Tuning = field(default_factory=Tuning)
    gate: Gate | None = None  # verify: the target tag only for what verifies (registry/gate.py)

    @property
    def budget(self) -> PullBudget:
        return PullBudget(self.spec.budget.pull_reserve, self.hooks.ledger)


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
    endpoint, hooks, tuning, source = setup.endpoint(), setup.hooks, setup.tuning, setup.source
    registry = setup.spec.source.registry
    retry = RetryPolicy(max_pause=hooks.max_pause)
    # Source and target on one host: the target's record, with the source's login when the target has none.
    same = endpoint.host == registry
    target_login = endpoint.credentials or (source.credentials if same else None) or None
    stall = float(setup.spec.transfer.stall_timeout)
    # The source's read timeout is the stall timeout: a source that goes silent is a stall too.
    hosts = {registry: HostSettings(source.credentials or None, source.network, retry, timeout=max(stall, 60.0)),
             endpoint.host: HostSettings(target_login, endpoint.network, retry, endpoint.uploads)}
    default = HostSettings(retry=retry)
    pool = ClientPool(plain_http(setup.spec.transfer.insecure_registries, hosts, default), default=default,
                      use_docker_config=tuning.use_docker_config, shared=hooks.clients)
    if hooks.locations is not None:
        locations = hooks.locations()
    else:
        locations = BlobLocations(default_cache_path() if tuning.blob_cache else None)
    return Copier(pool, workers=tuning.workers, progress=hooks.say, locations=locations, budget=setup.budget,
                  known=hooks.known or {}, referrers=_referrers(setup), tag_lists=hooks.tag_lists,
                  stall=stall, gate=_namespaced(setup.gate, endpoint))


def _referrers(setup: EngineSetup) -> ReferrerFilter:
    """What travels; with verify, the signatures and attestations first under `referrers-max`."""
    only = setup.spec.selection.referrers
    return replace(only, first=("signature", "attestation")) if setup.gate and setup.gate.active else only


def _namespaced(gate: Gate | None, endpoint: Endpoint) -> Gate | None:
    """The quarantine repository where the target's are: under the endpoint's namespace (GAR's PROJECT/REPO)."""
    if gate is None or not gate.quarantine or not endpoint.namespace:
        return gate
    return replace(gate, quarantine=f"{endpoint.namespace}/{gate.quarantine}")

