"""The `dmi` command line. Plain Python: commands that need Airflow import it themselves."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from dmi_provider import __version__
from dmi_provider.config import ConfigError, MirrorConfig, MirrorSpec, load_config
from dmi_provider.errors import DmiError
from dmi_provider.hints import Words, config_hint, hint
from dmi_provider.registry.auth import Credentials
from dmi_provider.tags import describe_filter

if TYPE_CHECKING:
    from dmi_provider.registry.copy import Plan
    from dmi_provider.registry.network import Network

EXIT_BAD_INPUT = 2
# What `dmi copy`'s hints name: its flags (dmi sync and dmi plan speak config.ini's keys: hints.CONFIG_WORDS).
COPY_WORDS = Words(login=("--src-creds", "--dst-creds"), ca_bundle=("--src-ca-bundle", "--dst-ca-bundle"),
                   ca_elsewhere=",", allow_plain_http="give it --insecure", forbid_plain_http="drop --insecure for it",
                   pin="update the pin")
DEBUG = False  # --debug: tracebacks instead of one line per failure


def _describe(config: MirrorConfig) -> str:
    env = config.env
    ecr_host = env.ecr_host()
    dags = config.dags()
    n = len(config.sections)
    lines = [
        f"{config.path}: {n} section{'s' if n != 1 else ''} in {len(dags)} DAG{'s' if len(dags) != 1 else ''} "
        f"(cloud {env.cloud}, ECR {ecr_host or 'host from the AWS connection at run time'})",
    ]
    for dag_id, specs in dags.items():
        lines.append("")
        lines.append(f"DAG {dag_id}  schedule: {specs[0].refresh.schedule}")
        for spec in specs:
            target = spec.target_name(ecr_host)
            for src_tag, dst_tag in spec.pairs():
                lines.append(f"  [{spec.section}] {spec.source}:{src_tag} -> {target}:{dst_tag}")
            if spec.tag_filter.active:
                lines.append(f"  [{spec.section}] {spec.source}:<{describe_filter(spec.tag_filter)}> -> "
                             f"{target}:<the same tags>")
            extras = [f"task group {spec.group_id}", f"target {spec.target}", f"engine {spec.engine}",
                      f"platforms {', '.join(spec.platforms) or 'all'}"]
            lines.append(f"      {'; '.join(extras)}")
    return "\n".join(lines)


def _load(path: str) -> MirrorConfig | None:
    """The config, or None after printing its every problem (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _log_to_stderr(level: int) -> None:
    """DMI's own log lines (progress, warnings) on stderr, bare."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("dmi_provider").addHandler(handler)
    logging.getLogger("dmi_provider").setLevel(level)


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    if args.json:
        payload = {
            "path": config.path,
            "environment": dataclasses.asdict(config.env),
            "dags": {
                dag_id: {
                    "schedule": specs[0].refresh.schedule,
                    "sections": [dataclasses.asdict(s) | {"source": s.source} for s in specs],
                }
                for dag_id, specs in config.dags().items()
            },
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(_describe(config))
    return 0


def _credentials(value: str | None, what: str) -> Credentials | None:
    if value is None:
        return None
    if ":" not in value:  # USER alone: the password comes from the environment, not the command line
        env = f"DMI_{what.upper()}_PASSWORD"
        if env not in os.environ:
            raise ValueError(f"--{what}-creds {value!r}: give USER:PASSWORD, or USER with the password in ${env}")
        return Credentials(value, os.environ[env])
    print(f"dmi copy: warning: a password given in --{what}-creds is visible to every user of this machine (ps) "
          f"and kept in shell history; give USER alone and the password in ${f'DMI_{what.upper()}_PASSWORD'}",
          file=sys.stderr)
    return Credentials.parse(value)


def _network(proxy: str | None, ca_bundle: str | None, flag: str) -> Network:
    """--src-proxy / --src-ca-bundle (or --dst-…) as a Network; a bad value is a ValueError naming the flag."""
    from dmi_provider.registry.network import Network, check_ca_bundle, check_proxy

    checked = {}
    for name, value, check in (("proxy", proxy, check_proxy), ("ca-bundle", ca_bundle, check_ca_bundle)):
        try:
            checked[name] = check(value) if value else None
        except ValueError as exc:
            raise ValueError(f"{flag}-{name}: {exc}") from None
    return Network(checked["proxy"], checked["ca-bundle"])


def _percent(text: str) -> float:
    from dmi_provider.config_keys import KEYS

    try:
        return float(KEYS["pull-reserve"].parse(text, None))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM, which starts afresh at exec), on Linux."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cmd_copy(args: argparse.Namespace) -> int:
    import logging

    from dmi_provider.engines import EngineSetup, make_engine, run
    from dmi_provider.registry.budget import PullBudget, PullsShort
    from dmi_provider.registry.reference import InvalidReference, check_host, parse_reference
    from dmi_provider.registry.referrers import ReferrerFilter
    from dmi_provider.targets.base import Endpoint

    try:
        src, dst = parse_reference(args.src), parse_reference(args.dst)
        insecure = [check_host(h) for h in args.insecure]
        networks = {ref.registry: _network(proxy, ca, f"--{what}")
                    for ref, proxy, ca, what in ((src, args.src_proxy, args.src_ca_bundle, "src"),
                                                 (dst, args.dst_proxy, args.dst_ca_bundle, "dst"))}
        creds = {ref.registry: _credentials(value, what)
                 for ref, value, what in ((src, args.src_creds, "src"), (dst, args.dst_creds, "dst"))}
    except (InvalidReference, ValueError, DmiError) as exc:
        print(f"dmi copy: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _log_to_stderr(logging.WARNING if args.quiet else logging.INFO)
    endpoint = Endpoint(dst.registry, creds.get(dst.registry), networks[dst.registry])
    engine = make_engine(args.engine, EngineSetup(
        endpoint=lambda: endpoint, source_registry=src.registry, source_credentials=creds.get(src.registry),
        source_network=networks[src.registry],
        insecure=insecure, platforms=tuple(args.platform), say=logging.getLogger("dmi_provider.copy").info,
        docker_url=args.docker_url, workers=args.jobs, blob_cache=not args.no_cache, use_docker_config=True,
        budget=PullBudget(args.pull_reserve), referrers=ReferrerFilter(enabled=not args.no_referrers)))
    try:
        with _stdout_to_stderr():  # the docker engine imports Airflow, whose logs go to stdout
            (result,) = run(engine, [(src, dst)], force=args.force, dry_run=args.dry_run)
    except DmiError as exc:
        later = f": try again in {exc.wait:.0f}s, or lower --pull-reserve" if isinstance(exc, PullsShort) else ""
        print(f"dmi copy: failed: {exc}{later}{hint(exc, COPY_WORDS)}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    peak = peak_rss_mib()
    if args.json:
        print(json.dumps(result.to_dict() | {"peak_rss_mib": peak}, indent=2))
    else:
        requests = ", ".join(f"{k}: {sum(v.values())}" for k, v in result.requests.items())
        limit = (f"; rate limit {result.ratelimit_remaining}/{result.ratelimit_limit} left"
                 if result.ratelimit_limit is not None else "")
        print(f"{result.status}: {result.source} -> {result.target} {result.target_digest or result.source_digest}"
              f"{' (platform-filtered index)' if result.filtered else ''}\n"
              f"  blobs: {result.blobs_copied} copied ({result.bytes_transferred} bytes), {result.blobs_mounted} "
              f"mounted, {result.blobs_skipped} skipped; manifests written: {result.manifests_copied}; "
              f"referrers copied: {result.referrers_copied}; "
              f"requests {requests}{limit}; {result.duration:.2f}s; peak memory {peak} MiB")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """HEADs only: what a run would copy, skip or create. Writes nothing."""
    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    with _stdout_to_stderr():  # Airflow's and the providers' logs go to stdout: keep it for the plan
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

    lines, by_source = [], {}
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
    from dmi_provider import backends
    from dmi_provider.job import Job
    from dmi_provider.targets import make_target

    job, rows, engine = Job.from_spec(spec, config.env), [], None
    base = {"section": spec.section, "dag_id": spec.dag_id}
    try:
        if job.tag_filter.active:
            pairs, selection = backends.resolve_tags(job)
            job = dataclasses.replace(job, pairs=tuple((a, b) for a, b in pairs))
            rows.append(base | {"action": "tags", "tags": [p[0] for p in pairs], "removed": selection.removed})
        target = make_target(job)
        engine = backends.engine_for(job, target, say=lambda _: None)
        repository = target.check_repository(job.target_repository)
        note = "" if repository.exists else repository.note
        base |= {"cloud": target.cloud, "target_repository": repository.repository}
        for pair in job.pairs:
            try:
                _host, (plan,) = backends.plan(dataclasses.replace(job, pairs=(pair,)), target, engine, force=False,
                                               dry_run=True)
            except DmiError as exc:  # one tag (a moved pin, a missing tag) does not hide the others
                rows.append(base | {"source": f"{spec.source}:{pair[0]}", "target": "", "action": "error",
                                    "error": f"{exc}{config_hint(exc)}"})
                continue
            rows.append(base | {"source": plan.source, "target": plan.target, "source_digest": plan.source_digest,
                                "action": ("copy" if plan.image_changed else "copy referrers") if plan.changed
                                else "skip (unchanged)", "repository": note,
                                "target_digest": plan.target_digest, "ratelimit_remaining": plan.ratelimit_remaining,
                                "ratelimit_limit": plan.ratelimit_limit, "ratelimit_source": plan.ratelimit_source,
                                "source_registry": job.source_registry, "pull_reserve": job.pull_reserve,
                                "referrers": [f"{a.what} of {a.subject}" for a in plan.attached],
                                "referrers_found": plan.referrers_found,
                                **_pulls_needed(plan, job.platforms)})
    except Exception as exc:  # one section's failure is its line; --debug shows the traceback
        if DEBUG:
            raise
        text = f"{exc}{config_hint(exc)}" if isinstance(exc, DmiError) else f"{type(exc).__name__}: {exc}"
        rows.append(base | {"source": spec.source, "target": "", "action": "error", "error": text})
    finally:
        if engine is not None:
            engine.close()
    return rows


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def cmd_history(args: argparse.Namespace) -> int:
    from dmi_provider.tracking.store import TrackingStore, when

    url = args.db
    if not url:
        from dmi_provider.config import current_environment
        from dmi_provider.hooks.connections import tracking_url

        url = tracking_url(args.conn_id, current_environment().db_path)
    store = TrackingStore(url)
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
        header = ("TARGET", "DIGEST", "STATUS", "FIRST MIRRORED", "LAST CHECKED", "LAST CHANGED")
        table = [(r["target"], (r["last_digest"] or "-")[:19], r["last_status"], when(r["first_mirrored"]),
                  when(r["last_checked"]), when(r["last_changed"])) for r in rows]
    else:
        header = ("FINISHED", "STATUS", "TARGET", "DIGEST", "BYTES", "BLOBS C/M/S", "DAG RUN", "ERROR")
        table = [(when(r["finished_at"]), r["status"], r["target"], (r["target_digest"] or "-")[:19],
                  str(r["bytes_transferred"]), f"{r['blobs_copied']}/{r['blobs_mounted']}/{r['blobs_skipped']}",
                  f"{r['dag_id']}/{r['run_id']}", (r["error"] or "")[:80]) for r in rows]
    if not table:
        print("no mirror history yet" if not args.state else "no mirrored images yet")
        return 0
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for line in (header, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """A whole config.ini in this process, as the DAGs would mirror it; history rows under run id cli__<time>."""
    import logging
    import time

    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    unknown = sorted(set(args.section) - {s.section for s in config.sections})
    if unknown:
        print(f"dmi sync: no section {', '.join(map(repr, unknown))} in {args.config}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from dmi_provider.sync import sync

    _log_to_stderr(logging.WARNING)
    say = (lambda _text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.monotonic()
    with _stdout_to_stderr():  # Airflow's and the providers' logs go to stdout: keep it for the report
        sections = sync(config, args.section, force=args.force, dry_run=args.dry_run, parallel=args.parallel,
                        say=say, record=not args.no_history, db=args.db, redact=_redact)
    outcomes = [o for s in sections for o in s.outcomes]
    failed = [o for o in outcomes if o.status == "failed"]
    peak = peak_rss_mib()
    if args.json:
        print(json.dumps({"sections": [s.to_dict() for s in sections], "peak_rss_mib": peak,
                          "duration": round(time.monotonic() - started, 3)}, indent=2, default=str))
    else:
        for outcome in outcomes:
            print(f"{outcome.status}: {outcome.source} -> {outcome.target} {outcome.target_digest or ''}"
                  f"{f' ({outcome.error})' if outcome.error else ''}".rstrip())
        counts = {status: sum(1 for o in outcomes if o.status == status)
                  for status in ("copied", "unchanged", "dry-run", "failed")}
        copied = sum(o.bytes_transferred for o in outcomes)
        print(f"{len(outcomes)} image(s) in {len(sections)} section(s): "
              + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
              + f"; {copied} bytes copied; {time.monotonic() - started:.2f}s; peak memory {peak} MiB")
    return 1 if failed else 0


def _redact(text: str) -> str:
    """Airflow's redaction of the secrets read from connections; none were read when Airflow is not loaded."""
    if "airflow.sdk.log" not in sys.modules:
        return text
    from airflow.sdk.log import redact

    return str(redact(text))


def cmd_keys(args: argparse.Namespace) -> int:
    from dmi_provider.config_keys import markdown_table, plain_list

    print(markdown_table() if args.markdown else plain_list())
    return 0


def _copy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copy", help="copy one image registry to registry, without a Docker daemon")
    p.add_argument("src", metavar="SRC", help="source reference, e.g. istio/proxyv2:1.7.0")
    p.add_argument("dst", metavar="DST", help="target reference, e.g. registry.example.com/istio/proxyv2:1.7.0")
    p.add_argument("--platform", action="append", default=[], metavar="OS/ARCH[/VARIANT]",
                   help="copy only this platform of a multi-arch image (repeatable); writes a new index")
    p.add_argument("--insecure", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow plain HTTP to this registry (repeatable)")
    p.add_argument("--src-creds", metavar="USER[:PASSWORD]",
                   help="source credentials (default: docker config.json; USER alone reads $DMI_SRC_PASSWORD)")
    p.add_argument("--dst-creds", metavar="USER[:PASSWORD]",
                   help="target credentials (default: docker config.json; USER alone reads $DMI_DST_PASSWORD)")
    for side, what in (("src", "source"), ("dst", "target")):
        p.add_argument(f"--{side}-proxy", metavar="URL", help=f"proxy for the {what} registry (default: HTTPS_PROXY, "
                       "HTTP_PROXY and NO_PROXY of the environment)")
        p.add_argument(f"--{side}-ca-bundle", metavar="PEM", help=f"CA certificate(s) to trust for the {what} "
                       "registry besides the system's (TLS stays verified)")
    p.add_argument("--dry-run", action="store_true", help="compare digests with HEADs only; write nothing")
    p.add_argument("--force", action="store_true", help="copy even when the target holds the source digest")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the blob location cache (mount hints across runs)")
    p.add_argument("--jobs", type=int, default=4, help="blobs transferred at once (default 4)")
    p.add_argument("--no-referrers", action="store_true",
                   help="copy the image alone: no signatures, SBOMs or attestations (by default they come along)")
    p.add_argument("--pull-reserve", type=_percent, default=10.0, metavar="PCT",
                   help="share of the source's pull limit (Docker Hub) never spent (default 10%%)")
    p.add_argument("--engine", choices=("registry", "docker"), default="registry",
                   help="registry (default): no daemon; docker: pull, tag and push through a Docker daemon")
    p.add_argument("--docker-url", help="the daemon for --engine docker (default $DOCKER_HOST, else the local "
                   "socket)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_copy)


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

    _copy_parser(sub)

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
    p.add_argument("--status", choices=("copied", "unchanged", "failed", "dry-run"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--state", action="store_true", help="one row per target: digest, first mirrored, last changed")
    p.add_argument("--db", help="SQLAlchemy URL of the tracking database (default: the dmi_tracking connection, "
                   "else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db)")
    p.add_argument("--conn-id", default="dmi_tracking", help="tracking connection id (default dmi_tracking)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("keys", help="list every config.ini key, its default and what it accepts")
    p.add_argument("--markdown", action="store_true", help="as README's Markdown table")
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    global DEBUG
    args = build_parser().parse_args(argv)
    DEBUG = args.debug
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
