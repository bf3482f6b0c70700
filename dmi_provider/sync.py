"""`dmi sync CONFIG`: a whole config.ini mirrored in one process, without a scheduler (CI jobs, trying a config
before deploying it). Each section goes through the steps of its task group, in the same order and through the
same pipeline (dmi_provider/pipeline.py): all sections planned first from HEADs (dmi_provider/planner.py, as a
DAG's planning task), then for what changed: plan and stage (pull), tag, ensure_repository, transfer (push),
record; it leaves the same history rows under the run id `cli__<time>`. Sections run side by side;
connections are read as tasks read them (AIRFLOW_CONN_*, secrets backends). A tracking database that is locked
or unreachable costs no copy: each section reports its images and why its history was not recorded."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from dmi_provider import mirror
from dmi_provider.config import MirrorConfig
from dmi_provider.hints import config_hint
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.pipeline import MirrorRun, Pushed, RunHooks
from dmi_provider.planner import PLAN_PARALLEL, SectionPlan, plan_sections
from dmi_provider.registry.pool import SharedClients
from dmi_provider.registry.referrers import TagListings
from dmi_provider.spec import MirrorSpec
from dmi_provider.tracking.outcome import MirrorOutcome


@dataclass
class SectionResult:
    section: str
    dag_id: str
    outcomes: list[MirrorOutcome] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)  # the CopyResults of `dmi copy --json`, per tag
    error: str | None = None
    history_error: str | None = None  # why the section's history rows are not in its tracking database
    history_db: str | None = None  # that database, its password hidden

    def to_dict(self) -> dict:
        return {"section": self.section, "dag_id": self.dag_id, "error": self.error,
                "history_error": self.history_error, "results": self.results,
                "outcomes": [{"source": o.source, "target": o.target, "status": o.status, "digest": o.target_digest,
                              "error": o.error} for o in self.outcomes]}


def run_id(now: datetime | None = None) -> str:
    return f"cli__{(now or datetime.now(UTC)).isoformat(timespec='seconds')}"


@dataclass(frozen=True)
class SyncOptions:
    """What `dmi sync`'s flags choose: which sections, how, and where history rows go."""

    sections: Sequence[str] = ()  # empty: all
    force: bool = False
    dry_run: bool = False
    parallel: int = 4  # sections at a time
    say: Callable[[str], None] = print
    record: bool = True  # history rows
    db: str | None = None  # a SQLAlchemy URL; else each section's tracking connection or DB_PATH
    redact: Callable[[str], str] = str


def sync(config: MirrorConfig, options: SyncOptions | None = None) -> list[SectionResult]:
    """Mirror the chosen sections: every section planned first from HEADs (many at a time, the unchanged ones
    recorded in one transaction per database), then only what changed copied, `parallel` sections at a time;
    one result per section."""
    options = options or SyncOptions()
    specs = [s for s in config.sections if not options.sections or s.section in options.sections]
    started = datetime.now(UTC)
    info = mirror.RunInfo("", run_id(started), logical_date=started, started_at=started)
    stores = Stores(options)
    if options.record:  # SQLAlchemy loads (a quarter second) while the first HEADs are on the wire
        threading.Thread(target=importlib.import_module, args=("dmi_provider.tracking.store",), daemon=True).start()
    tag_lists = TagListings()  # one listing per source repository

    clients = SharedClients()  # planning: one client and token per host and login for every section

    def hooks(spec: MirrorSpec, shared: SharedClients | None = None) -> RunHooks:
        return RunHooks(say=lambda text: options.say(f"[{spec.section}] {text}"),
                        history=stores.last_good(spec), tag_lists=tag_lists, clients=shared)

    try:
        try:
            plans = plan_sections(specs, lambda spec: hooks(spec, clients), force=options.force,
                                  dry_run=options.dry_run, parallel=max(options.parallel, PLAN_PARALLEL),
                                  redact=options.redact)
        finally:
            clients.close()
        results = {p.spec.section: _settled(p, info, options) for p in plans}
        stores.record([o for r in results.values() for o in r.outcomes])
        todo = [p for p in plans if p.items(options.force, options.dry_run)]
        with ThreadPoolExecutor(max_workers=max(1, options.parallel), thread_name_prefix="dmi-sync") as pool:
            copied = list(pool.map(lambda p: _copy(p, hooks(p.spec), info, options), todo))
        stores.record([o for r in copied for o in r.outcomes])
        for result in copied:
            done = results[result.section]
            done.outcomes += result.outcomes
            done.results, done.error = result.results, result.error
        for done in results.values():
            lost = stores.problem(done.section)
            if lost is not None:
                done.history_error, done.history_db = options.redact(lost.reason), lost.where
        stores.prune_daily()
    finally:
        stores.close()
    return [results[s.section] for s in specs]


def _settled(plan: SectionPlan, info: mirror.RunInfo, options: SyncOptions) -> SectionResult:
    """What planning settled for a section (unchanged images, a dry run), said as the copy would say it."""
    spec = plan.spec
    out = SectionResult(spec.section, spec.dag_id)
    run = replace(info, dag_id=spec.dag_id, finished_at=datetime.now(UTC))
    out.outcomes = plan.settled(run, options.force, options.dry_run)
    if plan.pulled is not None:
        for p in plan.pulled.plans:
            if options.dry_run or not p.changed:
                options.say(f"[{spec.section}] {mirror.describe(p)}")
                out.results.append(p.result(dry_run=options.dry_run).to_dict())
    return out


def _copy(plan: SectionPlan, hooks: RunHooks, info: mirror.RunInfo, options: SyncOptions) -> SectionResult:
    """The steps after planning for the pairs that need them (all of a section whose planning failed)."""
    spec = plan.spec
    out = SectionResult(spec.section, spec.dag_id)
    items = plan.items(options.force, options.dry_run)
    pairs = None if items[0][1] is None else [(src, dst) for _name, src, dst in items]
    mirror_run = MirrorRun(spec, pairs, hooks)
    pulled, pushed = None, Pushed()
    try:
        pulled = mirror_run.run_all(force=options.force, dry_run=options.dry_run, pushed=pushed)
    except Exception as exc:  # the section's failure is its row; the other sections go on
        out.error = options.redact(f"{type(exc).__name__}: {exc}{config_hint(exc)}")
        hooks.say(f"failed: {out.error}")
    finally:
        mirror_run.close()
    run = replace(info, dag_id=spec.dag_id, finished_at=datetime.now(UTC))
    out.outcomes = mirror_run.outcomes(run, pulled or mirror_run.pulled, pushed, out.error)
    out.results = pushed.to_xcom()
    return out


class Stores:
    """History stores by database: each section's tracking connection looked up once per connection id. A
    database that fails once (locked past its busy timeout, unreachable) is not asked again in this sync: its
    sections copy on, and say why their history is missing (`problem`)."""

    def __init__(self, options: SyncOptions):
        self.options = options
        self._urls: dict[tuple[str | None, str | None], str] = {}
        self._stores: dict[str, Any] = {}
        self._of: dict[str, str] = {}  # section -> url
        self._lost: dict[str, Any] = {}  # url -> the TrackingError it raised
        self._lock = threading.Lock()

    def of(self, spec: MirrorSpec) -> Any:
        if not self.options.record:
            return None
        from dmi_provider.tracking.store import TrackingStore  # a sync without history opens no database

        with self._lock:
            url = self.options.db or self._url(spec)
            self._of[spec.section] = url
            if url not in self._stores:
                self._stores[url] = TrackingStore(url)
            return self._stores[url]

    def _url(self, spec: MirrorSpec) -> str:
        key = (spec.tracking_conn_id, spec.env.db_path)
        if key not in self._urls:
            self._urls[key] = tracking_url(*key, cli=True)
        return self._urls[key]

    def last_good(self, spec: MirrorSpec) -> Callable[[str], dict | None] | None:
        """The history lookup of the docker engine's plan: none (the image is copied) once the database failed."""
        store = self.of(spec)
        if store is None:
            return None
        url = self._of[spec.section]

        def last_good(target: str) -> dict | None:
            from dmi_provider.tracking.store import TrackingError

            if url in self._lost:
                return None
            try:
                return store.last_good(target)
            except TrackingError as exc:
                self._lose(url, exc)
                return None

        return last_good

    def record(self, outcomes: list[MirrorOutcome]) -> None:
        if not self.options.record:
            return
        from dmi_provider.tracking.store import TrackingError

        by_url: dict[str, list[MirrorOutcome]] = {}
        for outcome in outcomes:
            by_url.setdefault(self._of[outcome.section], []).append(outcome)
        for url, rows in by_url.items():
            if url in self._lost:
                continue
            try:
                self._stores[url].record_many(rows)
            except TrackingError as exc:
                self._lose(url, exc)

    def _lose(self, url: str, exc: Exception) -> None:
        with self._lock:
            self._lost.setdefault(url, exc)

    def problem(self, section: str) -> Any:
        """The TrackingError that kept the section's history out of its database, or None."""
        return self._lost.get(self._of.get(section, ""))

    def prune_daily(self) -> None:
        """The tables that only grow, pruned as the record tasks prune them (once a day per database); a help,
        never a failure of the sync."""
        for url, store in self._stores.items():
            if url in self._lost:
                continue
            try:
                done = store.prune_daily()
            except Exception as exc:
                self.options.say(f"tracking tables not pruned: {self.options.redact(str(exc))}")
                continue
            if done and any(done.values()):
                self.options.say("pruned the tracking tables: " + ", ".join(f"{n} rows of {t}"
                                                                            for t, n in done.items() if n))

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
