"""`dmi sync CONFIG`: a whole config.ini mirrored in one process, without a scheduler (CI jobs, trying a config
before deploying it). Each section goes through the steps of its task group — plan (pull), ensure_repository,
stage, tag and transfer (push), record — with the same backends, and leaves the same history rows under the
run id `cli__<time>`. Sections run side by side; connections are read as tasks read them (AIRFLOW_CONN_*,
secrets backends)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dmi_provider import backends, mirror
from dmi_provider.config import MirrorConfig, MirrorSpec
from dmi_provider.hints import config_hint
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.job import Job
from dmi_provider.targets import make_target
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
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="dmi-sync") as pool:
        futures = [pool.submit(_section, spec, config, run, started, force=force, dry_run=dry_run, say=say,
                               record=record, db=db, redact=redact) for spec in specs]
        return [f.result() for f in futures]


def _section(spec: MirrorSpec, config: MirrorConfig, run: str, started: datetime, *, force: bool, dry_run: bool,
             say: Callable[[str], None], record: bool, db: str | None, redact: Callable[[str], str]) -> SectionResult:
    job = Job.from_spec(spec, config.env)
    out = SectionResult(spec.section, spec.dag_id)
    store = None
    if record:  # imported here: a sync without history opens no database (and starts faster)
        from dmi_provider.tracking.store import TrackingStore

        store = TrackingStore(db or tracking_url(job.tracking_conn_id, job.env.db_path))
    pulled: dict | None = None
    pushed: list[dict] = []
    engine = None

    def lines(text: str) -> None:
        say(f"[{spec.section}] {text}")

    try:
        if job.tag_filter.active:
            pairs, _selection = backends.resolve_tags(job)
            job = dataclasses.replace(job, pairs=tuple((a, b) for a, b in pairs))
        target = make_target(job)
        engine = backends.engine_for(job, target, lines, history=store.last_good if store else None)
        host, plans = backends.plan(job, target, engine, force=force, dry_run=dry_run)
        pulled = mirror.pulled(plans, host, dry_run)
        for plan in plans:
            lines(mirror.describe(plan))
        if not dry_run and pulled["changed"]:
            outcome = target.ensure_repository(job.target_repository)
            if outcome.created:
                lines(f"created repository {outcome.repository}")
            for difference in outcome.differences:
                lines(f"repository {outcome.repository}: {difference}")
            engine.stage(plans)
            engine.tag(plans)
            for plan in plans:  # one at a time: what was written before a failure is recorded as such
                pushed.extend(r.to_dict() for r in engine.transfer([plan]))
            applied = target.after_push(job.target_repository)
            if applied:
                lines(f"repository settings: {applied}")
        elif not dry_run:
            pushed = [plan.result().to_dict() for plan in plans]
    except Exception as exc:  # the section's failure is its row; the other sections go on
        out.error = redact(f"{type(exc).__name__}: {exc}{config_hint(exc)}")
        lines(f"failed: {out.error}")
    finally:
        if engine is not None:
            engine.close()
    finished = datetime.now(UTC)
    info = mirror.RunInfo(spec.dag_id, run, logical_date=started, started_at=started, finished_at=finished)
    out.outcomes = mirror.outcomes(job, info, pulled, pushed or None, out.error)
    out.results = pushed
    if store is not None:
        try:
            for outcome in out.outcomes:
                store.record(outcome)
        finally:
            store.close()
    return out
