"""Plans, results and errors -> tracking outcomes. Plain Python: no Airflow import here.

What the pull task hands on (`pulled`) and what the push task returns (`pushed`) are plain dicts that
crossed XCom; this module turns them, with the error a failed task left, into one MirrorOutcome per
tag of a section, and says what failed and which new digests deserve an Asset event.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dmi_provider.job import Job
from dmi_provider.registry.copy import Plan
from dmi_provider.tracking.outcome import MirrorOutcome

NOT_RUN = "not copied: an upstream task failed or did not run"


@dataclass(frozen=True)
class RunInfo:
    dag_id: str
    run_id: str
    logical_date: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def pulled(plans: Sequence[Plan], target_host: str, dry_run: bool) -> dict:
    """What the pull task passes on through XCom: the plans (verified manifests, never credentials)."""
    return {"target_host": target_host, "dry_run": dry_run, "changed": any(p.changed for p in plans),
            "plans": [p.to_dict() for p in plans]}


def plans_of(pulled: dict) -> list[Plan]:
    return [Plan.from_dict(data) for data in pulled["plans"]]


def manifests_to_xcom(fetched: dict[str, tuple[str, bytes]]) -> dict[str, list[str]]:
    """Manifests already paid for, as JSON for a deferred task's kwargs: digest -> [media type, base64]."""
    return {digest: [media_type, base64.b64encode(raw).decode()] for digest, (media_type, raw) in fetched.items()}


def manifests_from_xcom(data: dict | None) -> dict[str, tuple[str, bytes]]:
    """The reverse; each manifest is checked against its digest again when used."""
    return {digest: (media_type, base64.b64decode(raw)) for digest, (media_type, raw) in (data or {}).items()}


def describe(plan: Plan) -> str:
    """One log line of a plan: what will happen and what is left of the source's rate limit."""
    limit = (f"; rate limit {plan.ratelimit_remaining}/{plan.ratelimit_limit} left"
             if plan.ratelimit_limit is not None else "")
    state = "to copy" if plan.changed and plan.image_changed else "unchanged"
    extra = f"; {len(plan.attached)} referrer manifest(s) to copy" if plan.attached else ""
    return f"{plan.source} -> {plan.target}: {state} {plan.source_digest}{extra}{limit}"


def outcomes(job: Job, run: RunInfo, pulled: dict | None, pushed: Sequence[dict] | None,
             error: str | None) -> list[MirrorOutcome]:
    """One outcome per tag pair of the job, from what its tasks left behind."""
    plans = (pulled or {}).get("plans") or []
    dry_run = bool((pulled or {}).get("dry_run"))
    pushed = pushed or []
    out = []
    for i, (src_tag, dst_tag) in enumerate(job.pairs):
        plan = plans[i] if i < len(plans) else None
        result = pushed[i] if i < len(pushed) else None
        out.append(_outcome(job, run, src_tag, dst_tag, plan, result, dry_run, error))
    return out


def _outcome(job: Job, run: RunInfo, src_tag: str, dst_tag: str, plan: dict | None, result: dict | None,
             dry_run: bool, error: str | None) -> MirrorOutcome:
    outcome = MirrorOutcome(dag_id=run.dag_id, run_id=run.run_id, section=job.section,
                            source=plan["source"] if plan else f"{job.source}:{src_tag}",
                            target=plan["target"] if plan else job.target_name(dst_tag), status="failed",
                            target_kind=job.target,
                            logical_date=run.logical_date, started_at=run.started_at, finished_at=run.finished_at)
    if plan is None:
        outcome.error = error or NOT_RUN
        return outcome
    outcome.source_digest = plan["source_digest"]
    outcome.platforms = ",".join(plan.get("platforms") or ())
    outcome.ratelimit_remaining = plan.get("ratelimit_remaining")
    outcome.ratelimit_limit, outcome.ratelimit_source = plan.get("ratelimit_limit"), plan.get("ratelimit_source")
    outcome.source_pulls = plan.get("source_pulls") or 0
    notes = list(plan.get("warnings") or []) + list((result or {}).get("warnings") or [])
    outcome.warnings = "; ".join(dict.fromkeys(notes)) or None
    if dry_run:
        outcome.status, outcome.target_digest = "dry-run", plan["target_digest"]
    elif not plan["changed"]:
        outcome.status, outcome.target_digest = "unchanged", plan["target_digest"]
    elif result and result.get("target_digest"):
        outcome.status = "copied" if result["status"] == "dry-run" else result["status"]
        outcome.target_digest = result["target_digest"]
        outcome.platforms = ",".join(result.get("platforms") or ())
        for key in ("bytes_transferred", "blobs_copied", "blobs_mounted", "blobs_skipped"):
            setattr(outcome, key, result.get(key, 0))
        if result.get("ratelimit_remaining") is not None:
            outcome.ratelimit_remaining = result["ratelimit_remaining"]
        outcome.referrers_copied = result.get("referrers_copied") or 0
    else:
        outcome.error = error or NOT_RUN
    return outcome


def failure(outcomes: Sequence[MirrorOutcome]) -> str | None:
    """The reason to fail the record task (so the run shows the failure), or None."""
    failed = [o for o in outcomes if o.status == "failed"]
    return "; ".join(f"{o.target}: {o.error}" for o in failed) or None


def asset_events(outcomes: Sequence[MirrorOutcome]) -> list[tuple[str, dict]]:
    """(Asset URI, extra) of each newly copied image: oci://host/repository:tag."""
    return [(f"oci://{o.target}", {"digest": o.target_digest, "source": o.source, "source_digest": o.source_digest,
                                    "section": o.section}) for o in outcomes if o.status == "copied"]


def log_line(outcome: MirrorOutcome) -> str:
    return (f"{outcome.source} -> {outcome.target}: {outcome.status} {outcome.target_digest or ''}"
            f"{f' ({outcome.error})' if outcome.error else ''}")
