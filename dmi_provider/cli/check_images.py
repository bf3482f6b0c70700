"""`dmi check-images CONFIG FILES...`: the images that Kubernetes manifests use, and whether the mirror holds
them, before a deploy pulls them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dmi_provider.cli.common import EXIT_BAD_INPUT, columns, load, tracking_db
from dmi_provider.clusters.check import (
    MIRRORED,
    STALE,
    Check,
    History,
    HistoryError,
    Verdict,
    judge,
    short,
    suggest,
    summary,
    when,
)
from dmi_provider.clusters.manifests import ImageUse, ManifestError, read_manifests
from dmi_provider.clusters.mapping import MappingError, Mirrored, mirrors_of
from dmi_provider.config import MirrorConfig
from dmi_provider.errors import first_line

NO_HISTORY_HINT = "--no-history checks against config.ini only"


def _say(text: str) -> None:
    print(f"dmi check-images: {text}", file=sys.stderr)


def _hidden(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _missing_sqlite(url: str) -> str | None:
    """A SQLite file that is not there: opening it would create an empty one, and every image read unmirrored."""
    from sqlalchemy.engine import make_url

    address = make_url(url)
    path = address.database
    if address.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None
    return None if Path(path).exists() else f"{path}: no such file"


def _with_history(args: argparse.Namespace, config: MirrorConfig, mirrors: list[Mirrored],
                  uses: list[ImageUse]) -> list[Verdict] | None:
    """The verdicts against the history too; None after saying why it could not be read."""
    from dmi_provider.tracking.store import TrackingStore

    where, store = args.db or f"connection {args.conn_id}", None
    try:  # anything opening it can fail with (a URL, a driver, a connection), named in one line
        url = tracking_db(args.db, args.conn_id)
        where = _hidden(url)
        problem = _missing_sqlite(url)
        store = None if problem else TrackingStore(url, read_only=True)
    except Exception as exc:
        problem = first_line(exc)
    if store is None or problem:
        _say(f"cannot read the tracking history ({where}): {problem}; {NO_HISTORY_HINT}")
        return None
    try:
        return judge(uses, Check(config, mirrors, History(store)))
    except HistoryError as exc:
        _say(f"cannot read the tracking history ({store.where}): {exc}; {NO_HISTORY_HINT}")
        return None
    finally:
        store.close()


def _row(v: Verdict) -> tuple[str, str, str, str]:
    parts = []
    if v.mirror:
        parts.append(f"-> {v.mirror}" + (f" @{short(v.digest)}" if v.digest else ""))
    if v.status == MIRRORED and v.checked:
        parts.append(f"checked {when(v.checked)}")
    if v.reason:
        parts.append(v.reason)
    name, at, digest = v.image.partition("@")
    image = f"{name}@{short(digest)}…" if at and len(digest) > 19 else v.image  # the whole one is in --json
    return v.status, image, "; ".join(parts), "; ".join(dict.fromkeys(u.where for u in v.uses))


def _table(verdicts: list[Verdict]) -> list[str]:
    header = ("STATUS", "IMAGE", "MIRROR", "USED BY")
    return columns([header, *(_row(v) for v in verdicts)])


def cmd_check_images(args: argparse.Namespace) -> int:
    """Each distinct image of the manifests: mirrored, stale, not yet mirrored, or missing."""
    config = load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    try:
        mirrors = mirrors_of(config, args.section)
    except MappingError as exc:
        for line in exc.problems:
            _say(line)
        return EXIT_BAD_INPUT
    try:
        uses = read_manifests(args.files)
    except ManifestError as exc:
        for line in exc.problems:
            _say(line)
        return EXIT_BAD_INPUT
    if not uses:  # an empty pipe (helm failed upstream of it) must not pass as "nothing missing"
        _say(f"no container images in {', '.join('<stdin>' if f == '-' else f for f in args.files)}")
        return EXIT_BAD_INPUT
    verdicts = judge(uses, Check(config, mirrors)) if args.no_history else _with_history(args, config, mirrors,
                                                                                          uses)
    if verdicts is None:
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        for line in _table(verdicts):
            print(line)
        print(summary(verdicts, history=not args.no_history))
        lines = suggest(verdicts, Check(config, mirrors)) if args.suggest else []
        if lines:
            print(f"\n# config.ini for the missing images (they take the other keys from [DEFAULT] of "
                  f"{args.config}):")
            print("\n".join(lines).lstrip("\n"))
    failing = any(v.failing or (args.fail_on_stale and v.status == STALE) for v in verdicts)
    return 1 if failing else 0


def check_images_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-images", help="which images Kubernetes manifests use, and whether the mirror "
                       "holds them (mirrored, stale, not yet mirrored, missing)")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("files", metavar="FILES", nargs="+", help="Kubernetes YAML files (several documents each, "
                   "kind: List too), directories of them, or - for standard input")
    p.add_argument("--section", action="append", default=[], help="only against this section (repeatable)")
    p.add_argument("--no-history", action="store_true", help="judge from config.ini alone (configured or "
                   "missing): no tracking database")
    p.add_argument("--db", help="SQLAlchemy URL of the tracking database (default: the dmi_tracking connection, "
                   "else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db)")
    p.add_argument("--conn-id", default="dmi_tracking", help="tracking connection id (default dmi_tracking)")
    p.add_argument("--suggest", action="store_true", help="after the table, config.ini text for the missing "
                   "images, ready to paste (not with --json)")
    p.add_argument("--fail-on-stale", action="store_true", help="exit 1 when an image is stale, too")
    p.add_argument("--json", action="store_true", help="print the images as a JSON list")
    p.set_defaults(func=cmd_check_images)
