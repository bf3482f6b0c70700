"""One section's mirror pipeline, in one order, for every caller. No Airflow import here.

The steps are those of a task group: resolve tags (filters), plan (pull), stage, tag, ensure the
repository, transfer and after-push (push), outcomes (record). The operators run one step per task and pass
the typed results on through XCom; `dmi sync` and `dmi copy` run them all in one process (`run_all`);
`dmi plan` stops after planning. Credentials come from the section's connections (read when first needed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from dmi_provider import mirror
from dmi_provider.engines import Engine, EngineSetup, RunHooks, Tuning, make_engine
from dmi_provider.engines.base import Say
from dmi_provider.hooks.connections import RegistryLogin, public_key_text, registry_login
from dmi_provider.mirror import Pulled
from dmi_provider.registry.budget import DEFAULT_WINDOW, Ledger, wait_for
from dmi_provider.registry.client import HostSettings, RateLimit
from dmi_provider.registry.copy import ClientPool, CopyResult
from dmi_provider.registry.gate import Gate, RejectedImage
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.pool import plain_http
from dmi_provider.registry.reference import Reference, parse_reference
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import Selection, select
from dmi_provider.targets import Target, make_source, make_target
from dmi_provider.targets.base import RepositoryOutcome
from dmi_provider.tracking.outcome import MirrorOutcome
from dmi_provider.verify import VerifyPolicy, load_keys

log = logging.getLogger(__name__)
Pair = tuple[str, str]  # (source tag, target tag); either may be `@sha256:…`, a source tag may carry a pin


@dataclass
class Pushed:
    """What transfer wrote, one CopyResult per plan (what got written before a failure is kept)."""

    copies: list[CopyResult] = field(default_factory=list)
    applied: str | None = None  # settings applied after the push (ACR's locks)

    def to_xcom(self) -> list[dict]:
        return [c.to_dict() for c in self.copies]

    @classmethod
    def from_xcom(cls, data: Sequence[dict] | None) -> Pushed:
        return cls([CopyResult(**{**c, "platforms": tuple(c.get("platforms") or ())}) for c in data or ()])


class MirrorRun:
    """One section's steps over its (source tag, target tag) pairs; `target` and `source` replace the
    section's own (dmi copy passes logins from its flags)."""

    def __init__(self, spec: MirrorSpec, pairs: Sequence[Pair] | None = None, hooks: RunHooks | None = None, *,
                 target: Target | None = None, source: RegistryLogin | None = None, tuning: Tuning | None = None):
        self.spec = spec
        self.pairs: tuple[Pair, ...] = tuple(pairs) if pairs is not None else spec.pairs()
        self.listed = pairs is not None  # given pairs are the run's: no tag listing for them
        self.hooks = hooks or RunHooks()
        self.tuning = tuning or Tuning()
        self.pulled: Pulled | None = None  # run_all's plans, kept when a later step fails (for the outcomes)
        if target is not None:
            self.__dict__["target"] = target
        if source is not None:
            self.__dict__["source"] = source

    # -- what the steps use, made when first needed ---------------------------------------------------
    @cached_property
    def target(self) -> Target:
        return make_target(self.spec)

    @cached_property
    def source(self) -> RegistryLogin:
        """The source's login, and its proxy and CA: the connection's extras over config.ini's keys. A cloud's
        registry logs in through its cloud's connection, its token renewed while the copy runs."""
        if self.spec.source.kind != "registry":
            endpoint = make_source(self.spec).endpoint()
            return RegistryLogin(endpoint.credentials, endpoint.network)
        login = registry_login(self.spec.source.conn_id)
        return RegistryLogin(login.credentials, self.spec.source_network.merge(login.network))

    @cached_property
    def engine(self) -> Engine:
        setup = EngineSetup(self.target.endpoint, self.source, self.spec, self.hooks, self.tuning, gate_for(self.spec))
        return make_engine(self.spec.engine.name, setup)

    def references(self, host: str, namespace: str = "", pairs: Sequence[Pair] | None = None
                   ) -> list[tuple[Reference, Reference]]:
        """(source, target) references of the pairs (default: the run's), the target on `host` under `namespace`
        (GAR: PROJECT/REPOSITORY)."""
        where = f"{host}/{namespace}/" if namespace else f"{host}/"
        source, target = self.spec.source.name, f"{where}{self.spec.target.repository}"

        def join(name: str, ref: str) -> Reference:
            return parse_reference(f"{name}{ref}" if ref.startswith("@") else f"{name}:{ref}")

        return [(join(source, src), join(target, dst)) for src, dst in (self.pairs if pairs is None else pairs)]

    # -- the steps, in order ------------------------------------------------------------------------------
    def resolve_tags(self) -> Selection:
        """A section with tags-* filters: its named tags and pins, plus the source's tags that pass the filters
        (one listing of the source's tags: no pull counted). The run's pairs become those."""
        source, registry = self.source, self.spec.source.registry
        hosts = {registry: HostSettings(source.credentials or None, source.network)}
        pool = ClientPool(plain_http(self.spec.transfer.insecure_registries, hosts), use_docker_config=False)
        try:
            available = pool.get(registry).list_tags(self.spec.source.repository)
        finally:
            pool.close()
        selection = select(available, [src for src, _dst in self.pairs], self.spec.selection.filter)
        by_source = dict(self.pairs)
        self.pairs = tuple((tag, by_source.get(tag, tag)) for tag in selection.tags)
        return selection

    def plan(self, *, force: bool, dry_run: bool, pairs: Sequence[Pair] | None = None) -> Pulled:
        """HEADs at source and target (and the manifests to copy, unless dry_run); `pairs`: only these."""
        endpoint = self.target.endpoint()
        refs = self.references(endpoint.host, endpoint.namespace, pairs)
        plans = self.engine.plan(refs, force=force, dry_run=dry_run)
        return Pulled(endpoint.host, dry_run, plans)

    def check_repository(self) -> RepositoryOutcome:
        return self.target.check_repository(self.spec.target.repository)

    def stage(self, pulled: Pulled) -> None:
        self.engine.stage(pulled.plans)

    def tag(self, pulled: Pulled) -> list[str]:
        plans = [p for p in pulled.plans if p.changed]
        self.engine.tag(plans)
        return [p.target for p in plans]

    def ensure(self) -> RepositoryOutcome:
        if self.spec.quarantine:  # where images that do not verify go: made alongside, with the same settings
            self.target.ensure_repository(self.spec.quarantine)
        return self.target.ensure_repository(self.spec.target.repository)

    def transfer(self, pulled: Pulled, pushed: Pushed) -> Pushed:
        """Each plan in turn, so what was written before a failure is in `pushed`; then the settings a
        registry applies only to a repository that exists."""
        rejected = []
        for plan in pulled.plans:
            try:
                pushed.copies.extend(self.engine.transfer([plan]))
            except RejectedImage as exc:  # verify: this image only; the section's others go on
                result = plan.result()
                result.status, result.target_digest, result.reason = exc.outcome, None, str(exc)
                pushed.copies.append(result)
                rejected.append(f"{plan.target}: {exc}")
        pushed.applied = self.target.after_push(self.spec.target.repository)
        if rejected:
            raise RejectedImage("; ".join(rejected))
        return pushed

    def outcomes(self, run: mirror.RunInfo, pulled: Pulled | None, pushed: Pushed | None,
                 error: str | None) -> list[MirrorOutcome]:
        return mirror.outcomes(self.spec, self.pairs, run, pulled, pushed.copies if pushed else None, error)

    def run_all(self, *, force: bool = False, dry_run: bool = False, pushed: Pushed | None = None) -> Pulled:
        """Every step in one process, in the task group's order; what was written lands in `pushed`."""
        pushed = pushed if pushed is not None else Pushed()
        if self.spec.selection.filter.active and not self.listed:
            self.resolve_tags()
        pulled = self.pulled = self.plan(force=force, dry_run=dry_run)
        for plan in pulled.plans:
            self.hooks.say(mirror.describe(plan))
        if dry_run:
            return pulled
        if not pulled.changed:
            pushed.copies = [plan.result() for plan in pulled.plans]
            return pulled
        self.stage(pulled)
        self.tag(pulled)
        repository = self.ensure()
        if repository.created:
            self.hooks.say(f"created repository {repository.repository}")
        for difference in repository.differences:
            self.hooks.say(f"repository {repository.repository} differs from config.ini: {difference}")
        self.transfer(pulled, pushed)
        if pushed.applied:
            self.hooks.say(f"repository settings: {pushed.applied}")
        return pulled

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
            del self.__dict__["engine"]


def gate_for(spec: MirrorSpec) -> Gate | None:
    """verify: the section's policy, its keys read (files with config.ini; connections and variables now)."""
    if spec.verify.mode == "none":
        return None
    keys = load_keys((k.where, k.pem if k.pem is not None else public_key_text(k.kind, k.ref))
                     for k in spec.verify.keys)
    policy = VerifyPolicy(spec.verify.mode, keys, attestations=spec.verify.attestations,
                          annotations=dict(spec.verify.annotations))
    return Gate(policy, spec.quarantine)


def pull_ledger(tracking_url: str | Callable[[], str]) -> Ledger:
    """The pull budget's ledger in the tracking database, shared by every worker. One store for the task's
    claims (a pull task claims a few times: the top manifest, its platforms, referrers). `tracking_url` may be
    a callable: the connection is then looked up only when a pull is first claimed (most tasks claim none)."""
    from sqlalchemy.exc import SQLAlchemyError

    from dmi_provider.tracking.store import SeenLimit, TrackingStore, claim_pulls

    store: list[TrackingStore] = []

    def claim(key: str, needed: int, limit: RateLimit, reserve: int) -> float:
        try:
            if not store:
                store.append(TrackingStore(tracking_url() if callable(tracking_url) else tracking_url))
            seen = SeenLimit(limit.remaining or 0, limit.seen_at or time.time(), limit.limit or 0,
                             limit.window or DEFAULT_WINDOW)
            return claim_pulls(store[0], key, needed, seen, reserve)
        except SQLAlchemyError as exc:  # the ledger helps; without it the headers alone still decide
            log.warning("pull ledger unavailable (%s): deciding from the registry's headers alone",
                        type(exc).__name__)
            fits = (limit.remaining or 0) - needed >= reserve
            return 0.0 if fits else wait_for(needed, limit, reserve)

    return claim


def fleet_locations(tracking_url: str, upload_limit: int, say: Say) -> BlobLocations:
    """Blob locations in the tracking database when it is a server database (what every worker of a fleet
    reaches); for SQLite, which is one machine's, the machine's own cache."""
    if tracking_url.startswith("sqlite"):
        from dmi_provider.registry.locations import default_cache_path

        return BlobLocations(default_cache_path())
    from dmi_provider.tracking.fleet import SharedBlobLocations

    return SharedBlobLocations(tracking_url, upload_limit=upload_limit, say=say)
