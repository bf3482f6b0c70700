"""The `dmi` command line. Plain Python: commands that need Airflow import it themselves.

One module per larger command (copy.py, plan.py); common.py holds what they share."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from dmi_provider import __version__
from dmi_provider.cli.check_images import check_images_parser
from dmi_provider.cli.clusters import cluster_config_parser
from dmi_provider.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NO_HISTORY,
    Flags,
    columns,
    load,
    log_to_stderr,
    peak_rss_mib,
    redact,
    stdout_to_stderr,
    tracking_db,
)
from dmi_provider.cli.copy import copy_parser
from dmi_provider.cli.plan import cmd_plan
from dmi_provider.cli.prune import prune_parser
from dmi_provider.config import MirrorConfig, lane_of
from dmi_provider.errors import DmiError
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import describe_filter
from dmi_provider.tracking.outcome import STATUSES


def _schedule(spec: MirrorSpec) -> str:
    return spec.refresh.schedule if spec.refresh else "@once"


def _describe(config: MirrorConfig) -> str:
    env = config.env
    ecr_host = env.ecr_host()  # for the headline; each section's target_name() knows it too
    dags = config.dags()
    n = len(config.sections)
    lines = [
        f"{config.path}: {n} section{'s' if n != 1 else ''} in {len(dags)} DAG{'s' if len(dags) != 1 else ''} "
        f"(cloud {env.cloud}, ECR {ecr_host or 'host from the AWS connection at run time'})",
    ]
    for dag_id, specs in dags.items():
        lines.append("")
        lines.append(f"DAG {dag_id}  schedule: {_schedule(specs[0])}")
        for spec in specs:
            target, source = spec.target_name(), spec.source.name
            for src_tag, dst_tag in spec.pairs():
                lines.append(f"  [{spec.section}] {source}:{src_tag} -> {target}:{dst_tag}")
            if spec.selection.filter.active:
                lines.append(f"  [{spec.section}] {source}:<{describe_filter(spec.selection.filter)}> -> "
                             f"{target}:<the same tags>")
            extras = [f"task group {lane_of(spec)}", f"target {spec.target.kind}", f"engine {spec.engine.name}",
                      f"platforms {', '.join(spec.selection.platforms) or 'all'}"]
            if spec.verify.mode != "none":  # what a copy must carry before its tag is written
                where = f", else quarantined in {spec.quarantine}" if spec.quarantine else ""
                extras.append(f"verify {spec.verify.mode} ({len(spec.verify.keys)} key(s){where})")
            lines.append(f"      {'; '.join(extras)}")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    if args.json:
        payload = {
            "path": config.path,
            "environment": dataclasses.asdict(config.env),
            "dags": {
                dag_id: {
                    "schedule": _schedule(specs[0]),
                    "sections": [dataclasses.asdict(s) for s in specs],
                }
                for dag_id, specs in config.dags().items()
            },
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(_describe(config))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from dmi_provider.tracking.store import TrackingStore, when

    store = TrackingStore(tracking_db(args.db, args.conn_id))
    try:
        rows = store.state() if args.state else store.history(image=args.image, status=args.status,
                                                              limit=args.limit)
    finally:
        store.close()
    if args.image and args.state:
        rows = [r for r in rows if args.image in r["target"] or args.image in r["source"]]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if args.state:
        header: tuple[str, ...] = ("TARGET", "DIGEST", "STATUS", "FIRST MIRRORED", "LAST CHECKED", "LAST CHANGED")
        table: list[tuple[str, ...]] = [
            (r["target"], (r["last_digest"] or "-")[:19], r["last_status"], when(r["first_mirrored"]),
             when(r["last_checked"]), when(r["last_changed"])) for r in rows]
    else:
        header = ("FINISHED", "STATUS", "TARGET", "DIGEST", "BYTES", "BLOBS C/M/S", "DAG RUN", "ERROR")
        table = [(when(r["finished_at"]), r["status"], r["target"], (r["target_digest"] or "-")[:19],
                  str(r["bytes_transferred"]), f"{r['blobs_copied']}/{r['blobs_mounted']}/{r['blobs_skipped']}",
                  f"{r['dag_id']}/{r['run_id']}", (r["error"] or "")[:80]) for r in rows]
    if not table:
        print("no mirror history yet" if not args.state else "no mirrored images yet")
        return 0
    for line in columns([header, *table]):
        print(line)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """A whole config.ini in this process, as the DAGs would mirror it; history rows under run id cli__<time>."""
    import logging
    import time

    config = load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    unknown = sorted(set(args.section) - {s.section for s in config.sections})
    if unknown:
        print(f"dmi sync: no section {', '.join(map(repr, unknown))} in {args.config}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from dmi_provider.sync import SyncOptions, sync

    log_to_stderr(logging.WARNING)
    say = (lambda _text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.monotonic()
    with stdout_to_stderr():  # Airflow's and the providers' logs go to stdout: keep it for the report
        sections = sync(config, SyncOptions(args.section, args.force, args.dry_run, args.parallel, say,
                                            record=not args.no_history, db=args.db, redact=redact))
    outcomes = [o for s in sections for o in s.outcomes]
    failed = [o for o in outcomes if o.status in ("failed", "rejected", "quarantined")]
    unrecorded = [s for s in sections if s.history_error]
    for where, why in dict.fromkeys((s.history_db, s.history_error) for s in unrecorded):  # once per database
        print(f"dmi sync: history not recorded in {where}: {why}", file=sys.stderr)
    peak = peak_rss_mib()
    if args.json:
        print(json.dumps({"sections": [s.to_dict() for s in sections], "peak_rss_mib": peak,
                          "duration": round(time.monotonic() - started, 3)}, indent=2, default=str))
    else:
        for section in sections:
            note = f"; history not recorded: {section.history_error}" if section.history_error else ""
            for outcome in section.outcomes:
                print(f"{outcome.status}: {outcome.source} -> {outcome.target} {outcome.target_digest or ''}"
                      f"{f' ({outcome.error})' if outcome.error else ''}".rstrip() + note)
        counts = {status: sum(1 for o in outcomes if o.status == status)
                  for status in ("copied", "unchanged", "dry-run", "failed", "rejected", "quarantined")}
        copied = sum(o.bytes_transferred for o in outcomes)
        print(f"{len(outcomes)} image(s) in {len(sections)} section(s): "
              + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
              + f"; {copied} bytes copied; {time.monotonic() - started:.2f}s; peak memory {peak} MiB"
              + (f"; history not recorded for {len(unrecorded)} section(s)" if unrecorded else ""))
    # A failed image says more than missing history rows; both are on their lines.
    return 1 if failed else EXIT_NO_HISTORY if unrecorded else 0


def cmd_keys(args: argparse.Namespace) -> int:
    from dmi_provider.spec import markdown_table, plain_list

    print(markdown_table() if args.markdown else plain_list())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmi", description="DMI (Docker Mirror Images): mirror container images into private registries."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (default: one line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a config.ini and show the DAGs and schedules it makes")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("--json", action="store_true", help="print the parsed sections as JSON")
    p.set_defaults(func=cmd_validate)

    copy_parser(sub)

    p = sub.add_parser("plan", help="what a run would copy, skip or create (HEAD requests only; writes nothing)")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("--section", action="append", default=[], help="only this section (repeatable)")
    p.add_argument("--verbose", "-v", action="store_true", help="also say which tags each tags-* filter left out")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("sync", help="mirror a whole config.ini in this process, as its DAGs would (no scheduler)")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("--section", action="append", default=[], help="only this section (repeatable)")
    p.add_argument("--force", action="store_true", help="copy even when the target holds the source digest")
    p.add_argument("--dry-run", action="store_true", help="plan only (HEAD requests); write nothing at the targets")
    p.add_argument("--parallel", type=int, default=4, metavar="N", help="sections mirrored at once (default 4)")
    p.add_argument("--no-history", action="store_true", help="write no rows to the tracking database")
    p.add_argument("--db", help="SQLAlchemy URL of the tracking database (default: each section's tracking "
                   "connection, else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("history", help="the mirror history (or --state: the current state) as a table")
    p.add_argument("--image", help="only targets or sources containing this text")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--state", action="store_true", help="one row per target: digest, first mirrored, last changed")
    p.add_argument("--db", help="SQLAlchemy URL of the tracking database (default: the dmi_tracking connection, "
                   "else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db)")
    p.add_argument("--conn-id", default="dmi_tracking", help="tracking connection id (default dmi_tracking)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    prune_parser(sub)
    check_images_parser(sub)
    cluster_config_parser(sub)

    p = sub.add_parser("keys", help="list every config.ini key, its default and what it accepts")
    p.add_argument("--markdown", action="store_true", help="as README's Markdown table")
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    Flags.debug = args.debug
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        what = str(exc) if isinstance(exc, DmiError) else f"{type(exc).__name__}: {exc}"
        print(f"dmi {args.command}: failed: {what} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
