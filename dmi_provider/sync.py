"""`dmi sync CONFIG`: a whole config.ini mirrored in one process, without a scheduler (CI jobs, trying a config
before deploying it). Each section goes through the steps of its task group, in the same order and through the
same pipeline (dmi_provider/pipeline.py): plan and stage (pull), tag, ensure_repository, transfer (push),
record; it leaves the same history rows under the run id `cli__<time>`. Sections run side by side;
connections are read as tasks read them (AIRFLOW_CONN_*, secrets backends)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dmi_provider import mirror
from dmi_provider.config import MirrorConfig
from dmi_provider.hints import config_hint
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.pipeline import MirrorRun, Pushed, RunHooks
from dmi_provider.spec import MirrorSpec
from dmi_provider.tracking.outcome import MirrorOutcome


@dataclass
class SectionResult:
    section: str
    dag_id: str
    outcomes: list[MirrorOutcome] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)  # the CopyResults of `dmi copy --json`, per tag
    error: str | None = None

    def to_dict(self) -> dict:
        return {"section": self.section, "dag_id": self.dag_id, "error": self.error, "results": self.results,
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
    """Mirror the chosen sections, `parallel` sections at a time; one result per section."""
    options = options or SyncOptions()
    specs = [s for s in config.sections if not options.sections or s.section in options.sections]
    started = datetime.now(UTC)
    run = run_id(started)
    with ThreadPoolExecutor(max_workers=max(1, options.parallel), thread_name_prefix="dmi-sync") as pool:
        futures = [pool.submit(_section, spec, run, started, options) for spec in specs]
        return [f.result() for f in futures]


def _section(spec: MirrorSpec, run: str, started: datetime, options: SyncOptions) -> SectionResult:
    out = SectionResult(spec.section, spec.dag_id)
    store = None
    if options.record:  # imported here: a sync without history opens no database (and starts faster)
        from dmi_provider.tracking.store import TrackingStore

        store = TrackingStore(options.db or tracking_url(spec.tracking_conn_id, spec.env.db_path))

    def lines(text: str) -> None:
        options.say(f"[{spec.section}] {text}")

    mirror_run = MirrorRun(spec, hooks=RunHooks(say=lines, history=store.last_good if store else None))
    pulled, pushed = None, Pushed()
    try:
        pulled = mirror_run.run_all(force=options.force, dry_run=options.dry_run, pushed=pushed)
    except Exception as exc:  # the section's failure is its row; the other sections go on
        out.error = options.redact(f"{type(exc).__name__}: {exc}{config_hint(exc)}")
        lines(f"failed: {out.error}")
    finally:
        mirror_run.close()
    info = mirror.RunInfo(spec.dag_id, run, logical_date=started, started_at=started, finished_at=datetime.now(UTC))
    out.outcomes = mirror_run.outcomes(info, pulled, pushed, out.error)
    out.results = pushed.to_xcom()
    if store is not None:
        try:
            for outcome in out.outcomes:
                store.record(outcome)
        finally:
            store.close()
    return out
