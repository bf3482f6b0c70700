"""A section's Target and Engine, with credentials from Airflow connections: what the operators and
the CLI's `dmi plan` both use, so a plan on the command line is the pull task's plan."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dmi_provider.engines import Engine, EngineSetup, make_engine
from dmi_provider.engines.base import History
from dmi_provider.hooks.connections import RegistryLogin, registry_login
from dmi_provider.job import Job
from dmi_provider.registry.budget import DEFAULT_WINDOW, Ledger, PullBudget, wait_for
from dmi_provider.registry.client import HostSettings, RateLimit
from dmi_provider.registry.copy import ClientPool, Plan
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.pool import plain_http
from dmi_provider.tags import Selection, select
from dmi_provider.targets import Target, make_source

log = logging.getLogger(__name__)


def source_login(job: Job) -> RegistryLogin:
    """The source's login, and its proxy and CA: the connection's extras over config.ini's keys. A cloud's
    registry logs in through its cloud's connection, its token renewed while the copy runs."""
    if job.source_type != "registry":
        endpoint = make_source(job).endpoint()
        return RegistryLogin(endpoint.credentials, endpoint.network)
    login = registry_login(job.source_conn_id)
    return RegistryLogin(login.credentials, job.source_network.merge(login.network))


TASK_MAX_PAUSE = 5.0  # a task defers rather than sleeping through a longer Retry-After


def pull_ledger(tracking_url: str | Callable[[], str]) -> Ledger:
    """The pull budget's ledger in the tracking database, shared by every worker. One store for the task's
    claims (a pull task claims a few times: the top manifest, its platforms, referrers). `tracking_url` may be
    a callable: the connection is then looked up only when a pull is first claimed (most tasks claim none)."""
    from sqlalchemy.exc import SQLAlchemyError

    from dmi_provider.tracking.store import TrackingStore, claim_pulls

    store: list[TrackingStore] = []

    def claim(key: str, needed: int, limit: RateLimit, reserve: int) -> float:
        try:
            if not store:
                store.append(TrackingStore(tracking_url() if callable(tracking_url) else tracking_url))
            return claim_pulls(store[0], key, needed, limit.remaining or 0, limit.seen_at or time.time(), reserve,
                               limit.limit or 0, limit.window or DEFAULT_WINDOW)
        except SQLAlchemyError as exc:  # the ledger helps; without it the headers alone still decide
            log.warning("pull ledger unavailable (%s): deciding from the registry's headers alone",
                        type(exc).__name__)
            fits = (limit.remaining or 0) - needed >= reserve
            return 0.0 if fits else wait_for(needed, limit, reserve)

    return claim


def engine_for(job: Job, target: Target, say: Callable[[str], None], history: History | None = None,
               known: dict[str, tuple[str, bytes]] | None = None, ledger: Ledger | None = None,
               locations: Callable[[], BlobLocations] | None = None) -> Engine:
    """The section's engine; `known`: manifests an earlier try of the task already paid for; `ledger`:
    where tasks running at once claim the source's pulls; `locations`: blob locations a fleet shares."""
    source = source_login(job)
    return make_engine(job.engine, EngineSetup(
        budget=PullBudget(job.pull_reserve, ledger), known_manifests=known, max_pause=TASK_MAX_PAUSE,
        referrers=job.referrers,
        endpoint=target.endpoint, source_registry=job.source_registry, source_network=source.network,
        source_credentials=source.credentials, insecure=job.insecure_registries,
        platforms=job.platforms, say=say, history=history, docker_url=job.docker_url,
        docker_conn_id=job.docker_conn_id, keep_local_images=job.keep_local_images, locations=locations))


def fleet_locations(tracking_url: str, upload_limit: int, say: Callable[[str], None]) -> BlobLocations:
    """Blob locations in the tracking database when it is a server database (what every worker of a fleet
    reaches); for SQLite, which is one machine's, the machine's own cache."""
    if tracking_url.startswith("sqlite"):
        from dmi_provider.registry.locations import default_cache_path

        return BlobLocations(default_cache_path())
    from dmi_provider.tracking.fleet import SharedBlobLocations

    return SharedBlobLocations(tracking_url, upload_limit=upload_limit, say=say)


def plan(job: Job, target: Target, engine: Engine, *, force: bool, dry_run: bool) -> tuple[str, list[Plan]]:
    """(target host, one plan per tag pair), from HEAD requests (and manifest GETs unless dry_run)."""
    endpoint = target.endpoint()
    return endpoint.host, engine.plan(job.references(endpoint.host, endpoint.namespace), force=force, dry_run=dry_run)


def resolve_tags(job: Job) -> tuple[list[list[str]], Selection]:
    """The (source tag, target tag) pairs of a section with tag filters: its named tags and pins, plus the
    source's tags that pass the filters (one listing of the source's tags: no pull counted)."""
    source = source_login(job)
    hosts = {job.source_registry: HostSettings(source.credentials or None, source.network)}
    pool = ClientPool(plain_http(job.insecure_registries, hosts), use_docker_config=False)
    try:
        available = pool.get(job.source_registry).list_tags(job.source_repository)
    finally:
        pool.close()
    named = [src for src, _dst in job.pairs]
    selection = select(available, named, job.tag_filter)
    by_source = dict(job.pairs)
    return [[tag, by_source.get(tag, tag)] for tag in selection.tags], selection
