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


def sync(config: MirrorConfig, sections: Sequence[str] = (), *, force: bool = False, dry_run: bool = False,
         parallel: int = 4, say: Callable[[str], None] = print, record: bool = True, db: str | None = None,
         redact: Callable[[str], str] = str) -> list[SectionResult]:
    """Mirror the chosen sections (all when empty), `parallel` sections at a time; one result per section.
    History rows go to `db` (a SQLAlchemy URL), else to each section's tracking connection or DB_PATH."""
    specs = [s for s in config.sections if not sections or s.section in sections]
    started = datetime.now(UTC)
    run = run_id(started)
    options = _Options(force, dry_run, say, record, db, redact)
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="dmi-sync") as pool:
        futures = [pool.submit(_section, spec, run, started, options) for spec in specs]
        return [f.result() for f in futures]


@dataclass(frozen=True)
class _Options:
    force: bool
    dry_run: bool
    say: Callable[[str], None]
    record: bool
    db: str | None
    redact: Callable[[str], str]


def _section(spec: MirrorSpec, run: str, started: datetime, options: _Options) -> SectionResult:
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
        out.error = options.redact(f"{type(exc).__name__}: {exc}")
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
