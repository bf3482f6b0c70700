"""Plans, results and errors -> tracking outcomes. Plain Python: no Airflow import here.

What planning hands on (`Pulled`) and what the push returns (CopyResult dicts) crossed XCom; this module
turns them, with the error a failed task left, into one MirrorOutcome per tag of a section, and says what
failed and which new digests deserve an Asset event.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dmi_provider.registry.copy import CopyResult, Plan
from dmi_provider.registry.plan import XCOM_MANIFEST_BYTES
from dmi_provider.spec import MirrorSpec
from dmi_provider.tracking.outcome import MirrorOutcome

NOT_RUN = "not copied: an upstream task failed or did not run"


@dataclass
class Pulled:
    """What planning hands on (the pull task's XCom): the plans with verified manifests, never credentials."""

    target_host: str
    dry_run: bool
    plans: list[Plan]

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.plans)

    def to_xcom(self) -> dict:
        room = [XCOM_MANIFEST_BYTES]  # for all the plans: a listed section's tags share one XCom value
        return {"target_host": self.target_host, "dry_run": self.dry_run, "changed": self.changed,
                "plans": [p.to_dict(room) for p in self.plans]}

    @classmethod
    def from_xcom(cls, data: dict) -> Pulled:
        return cls(data["target_host"], bool(data["dry_run"]), [Plan.from_dict(p) for p in data["plans"]])


@dataclass(frozen=True)
class RunInfo:
    dag_id: str
    run_id: str
    logical_date: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def manifests_to_xcom(fetched: dict[str, tuple[str, bytes]], room: int = XCOM_MANIFEST_BYTES
                      ) -> dict[str, list[str]]:
    """Manifests already paid for, as JSON for a deferred task's kwargs: digest -> [media type, base64]; those
    past `room` bytes in all are left out (the trigger's kwargs live in the metadata database): the resumed
    task pays for them again."""
    out = {}
    for digest, (media_type, raw) in fetched.items():
        if len(raw) <= room:
            room -= len(raw)
            out[digest] = [media_type, base64.b64encode(raw).decode()]
    return out


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


def outcomes(spec: MirrorSpec, pairs: Sequence[tuple[str, str]], run: RunInfo, pulled: Pulled | None,
             pushed: Sequence[CopyResult] | None, error: str | None) -> list[MirrorOutcome]:
    """One outcome per tag pair of the section, from what its tasks left behind."""
    plans = pulled.plans if pulled else []
    pushed = pushed or []
    out = []
    for i, (src_tag, dst_tag) in enumerate(pairs):
        outcome = MirrorOutcome(dag_id=run.dag_id, run_id=run.run_id, section=spec.section,
                                source=f"{spec.source.name}:{src_tag}", target=f"{spec.target_name()}:{dst_tag}",
                                status="failed", target_kind=spec.target.kind, logical_date=run.logical_date,
                                started_at=run.started_at, finished_at=run.finished_at)
        if i < len(plans):
            _fill(outcome, plans[i], pushed[i] if i < len(pushed) else None, pulled.dry_run if pulled else False)
        if outcome.status == "failed":
            outcome.error = error or NOT_RUN
        out.append(outcome)
    return out


def _fill(outcome: MirrorOutcome, plan: Plan, result: CopyResult | None, dry_run: bool) -> None:
    """What a plan and its copy's result tell of one tag."""
    outcome.source, outcome.target = plan.source, plan.target
    outcome.source_digest = plan.source_digest
    outcome.platforms = ",".join(plan.platforms)
    outcome.ratelimit_remaining = plan.ratelimit_remaining
    outcome.ratelimit_limit, outcome.ratelimit_source = plan.ratelimit_limit, plan.ratelimit_source
    outcome.source_pulls = plan.source_pulls
    notes = list(plan.warnings) + list(result.warnings if result else [])
    outcome.warnings = "; ".join(dict.fromkeys(notes)) or None
    if dry_run:
        outcome.status, outcome.target_digest = "dry-run", plan.target_digest
    elif not plan.changed:
        outcome.status, outcome.target_digest = "unchanged", plan.target_digest
    elif result and result.status in ("rejected", "quarantined"):
        outcome.status, outcome.error = result.status, result.reason
    elif result and result.target_digest:
        outcome.status = "copied" if result.status == "dry-run" else result.status
        outcome.target_digest = result.target_digest
        outcome.platforms = ",".join(result.platforms)
        outcome.bytes_transferred, outcome.blobs_copied = result.bytes_transferred, result.blobs_copied
        outcome.blobs_mounted, outcome.blobs_skipped = result.blobs_mounted, result.blobs_skipped
        if result.ratelimit_remaining is not None:
            outcome.ratelimit_remaining = result.ratelimit_remaining
        outcome.referrers_copied = result.referrers_copied
        outcome.verified_by = result.verified_by


def failure(outcomes: Sequence[MirrorOutcome]) -> str | None:
    """The reason to fail the record task (so the run shows the failure), or None."""
    failed = [o for o in outcomes if o.status in ("failed", "rejected", "quarantined")]
    return "; ".join(f"{o.target}: {o.error}" for o in failed) or None


def asset_events(outcomes: Sequence[MirrorOutcome]) -> list[tuple[str, dict]]:
    """(Asset URI, extra) of each newly copied image: oci://host/repository:tag."""
    return [(f"oci://{o.target}", {"digest": o.target_digest, "source": o.source, "source_digest": o.source_digest,
                                    "section": o.section}) for o in outcomes if o.status == "copied"]


def log_line(outcome: MirrorOutcome) -> str:
    return (f"{outcome.source} -> {outcome.target}: {outcome.status} {outcome.target_digest or ''}"
            f"{f' ({outcome.error})' if outcome.error else ''}")
