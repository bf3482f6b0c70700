"""`dmi plan CONFIG`: what a run would copy, skip or create, from HEAD requests only (the pull task's planning)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from dmi_provider.cli.common import EXIT_BAD_INPUT, Flags, load, stdout_to_stderr
from dmi_provider.config import MirrorConfig
from dmi_provider.errors import DmiError
from dmi_provider.hints import config_hint
from dmi_provider.spec import MirrorSpec

if TYPE_CHECKING:
    from dmi_provider.pipeline import MirrorRun
    from dmi_provider.registry.copy import Plan


def cmd_plan(args: argparse.Namespace) -> int:
    """HEADs only: what a run would copy, skip or create. Writes nothing."""
    config = load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    with stdout_to_stderr():  # Airflow's and the providers' logs go to stdout: keep it for the plan
        rows = [row for spec in config.sections if not args.section or spec.section in args.section
                for row in _plan_section(spec, config)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if row["action"] == "error":
                print(f"[{row['section']}] error: {row['error']}")
                continue
            if row["action"] == "tags":
                print(f"[{row['section']}] tags: {', '.join(row['tags']) or 'none'}")
                for name, gone in row["removed"].items() if args.verbose else ():
                    print(f"[{row['section']}]   {name} left out {len(gone)}: {', '.join(gone)}")
                continue
            extra = f"; {row['repository']}" if row["repository"] else ""
            print(f"[{row['section']}] {row['source']} -> {row['target']} ({row['cloud']} repository "
                  f"{row['target_repository']}): {row['action']} (source {row['source_digest']}, target "
                  f"{row['target_digest'] or 'none'}{extra})")
            for what in row["referrers"]:
                print(f"[{row['section']}]   + {what}")
            if row.get("verify") and row["action"] == "copy":
                print(f"[{row['section']}]   verify before tagging: {row['verify']}")
        for line in _budget_lines(rows):
            print(line)
    return 1 if any(row["action"] == "error" for row in rows) else 0


def _pulls_needed(plan: Plan, platforms: tuple[str, ...]) -> dict:
    """What the copy will cost at the source, from HEADs alone: the top manifest, and for a multi-arch
    index one more per platform (known only when `platforms` names them)."""
    from dmi_provider.registry.manifest import INDEX_TYPES

    if not plan.changed:
        return {"pulls_needed": 0, "pulls_open": False}
    if plan.media_type not in INDEX_TYPES:
        return {"pulls_needed": 1, "pulls_open": False}
    return {"pulls_needed": 1 + len(platforms), "pulls_open": not platforms}


def _budget_lines(rows: list[dict]) -> list[str]:
    """Per source registry with a pull limit: pulls the run needs, pulls left, and whether it would wait."""
    from dmi_provider.registry.budget import PullBudget

    lines: list[str] = []
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("ratelimit_limit") is not None:
            by_source.setdefault(row["source_registry"], []).append(row)
    for registry, found in by_source.items():
        needed = sum(r["pulls_needed"] for r in found)
        open_ended = sum(1 for r in found if r["pulls_open"])
        latest = found[-1]
        limit, left = latest["ratelimit_limit"], latest["ratelimit_remaining"]
        reserve = PullBudget(max(r["pull_reserve"] for r in found)).reserve(limit)
        more = f" (+ one per platform of {open_ended} multi-arch image{'s' if open_ended != 1 else ''})" \
            if open_ended else ""
        who = f" for {latest['ratelimit_source']}" if latest.get("ratelimit_source") else ""
        lines.append(f"{registry}: this run needs {needed} pull{'s' if needed != 1 else ''}{more}; {left} of {limit} "
                     f"left{who}, {reserve} kept in reserve (pull-reserve)")
        if left is not None and left - needed - open_ended < reserve:
            lines.append(f"{registry}: warning: not enough pulls left: some pull tasks will wait (deferred) until "
                         "the window frees pulls")
    return lines


def _plan_section(spec: MirrorSpec, config: MirrorConfig) -> list[dict]:
    """The pull task's planning (HEADs only, as in a dry run), one row per tag; a section with tags-*
    filters first lists the source's tags, as its tags_<group> task does."""
    from dmi_provider.pipeline import MirrorRun, RunHooks

    run, rows = MirrorRun(spec, hooks=RunHooks(say=lambda _: None)), []
    base: dict[str, Any] = {"section": spec.section, "dag_id": spec.dag_id}
    try:
        if spec.selection.filter.active:
            selection = run.resolve_tags()
            rows.append(base | {"action": "tags", "tags": [p[0] for p in run.pairs], "removed": selection.removed})
        repository = run.check_repository()
        base |= {"cloud": run.target.cloud, "target_repository": repository.repository, "verify": _verify_text(spec)}
        for pair in run.pairs:
            rows.append(base | _plan_row(run, pair, repository.note if not repository.exists else ""))
    except Exception as exc:  # one section's failure is its line; --debug shows the traceback
        if Flags.debug:
            raise
        text = f"{exc}{config_hint(exc)}" if isinstance(exc, DmiError) else f"{type(exc).__name__}: {exc}"
        rows.append(base | {"source": spec.source.name, "target": "", "action": "error", "error": text})
    finally:
        run.close()
    return rows


def _verify_text(spec: MirrorSpec) -> str | None:
    """What a copy of the section must carry before its tag is written (its keys read: a missing one shows)."""
    from dmi_provider.pipeline import gate_for

    gate = gate_for(spec)
    if gate is None:
        return None
    policy, v = gate.policy, spec.verify
    text = f"a signature by one of {', '.join(k.fingerprint[:19] + '…' for k in policy.keys)}"
    if v.mode == "attestations":
        text += f", attestations {', '.join(v.attestations) or '(any one)'}"
    if v.annotations:
        text += f", annotations {', '.join(f'{k}={val}' for k, val in v.annotations)}"
    return text + (f"; else quarantined in {gate.quarantine}" if gate.quarantine else "; else not published")


def _plan_row(run: MirrorRun, pair: tuple[str, str], note: str) -> dict:
    """One tag's row; its failure (a moved pin, a missing tag) is its own row, not the section's."""
    spec = run.spec
    try:
        (plan,) = run.plan(force=False, dry_run=True, pairs=[pair]).plans
    except DmiError as exc:
        return {"source": f"{spec.source.name}:{pair[0]}", "target": "", "action": "error",
                "error": f"{exc}{config_hint(exc)}"}
    return {"source": plan.source, "target": plan.target, "source_digest": plan.source_digest,
            "action": ("copy" if plan.image_changed else "copy referrers") if plan.changed else "skip (unchanged)",
            "repository": note, "target_digest": plan.target_digest, "ratelimit_remaining": plan.ratelimit_remaining,
            "ratelimit_limit": plan.ratelimit_limit, "ratelimit_source": plan.ratelimit_source,
            "source_registry": spec.source.registry, "pull_reserve": spec.budget.pull_reserve,
            "referrers": [f"{a.what} of {a.subject}" for a in plan.attached], "referrers_found": plan.referrers_found,
            **_pulls_needed(plan, spec.selection.platforms)}
