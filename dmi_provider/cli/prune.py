"""`dmi prune-history`: the tracking tables' old rows deleted (README, "Retention")."""

from __future__ import annotations

import argparse
import json

from dmi_provider.cli.common import tracking_db

PRUNED = {"dmi_mirror_history": "finished more than {days} days ago; each section and target keeps its latest row, "
                                "its latest good row and the first row of its current digest",
          "dmi_blob_locations": "not seen for {days} days",
          "dmi_leases": "expired more than an hour ago",
          "dmi_pull_claims": "older than the longest pull window, 31 days"}


def cmd_prune_history(args: argparse.Namespace) -> int:
    """Delete the tracking tables' old rows (the record tasks do it once a day too); print how many per table."""
    from dmi_provider.tracking.retention import retention
    from dmi_provider.tracking.store import TrackingStore

    history_days, locations_days = args.history_days, args.locations_days
    if history_days is None or locations_days is None:  # the environment's, else the defaults
        default_history, default_locations = retention()
        history_days = default_history if history_days is None else history_days
        locations_days = default_locations if locations_days is None else locations_days
    store = TrackingStore(tracking_db(args.db, args.conn_id))
    try:
        deleted = store.prune(history_days, locations_days, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "history_days": history_days, "locations_days": locations_days,
                          "deleted": deleted}, indent=2))
        return 0
    days = {"dmi_mirror_history": history_days, "dmi_blob_locations": locations_days}
    for table, n in deleted.items():
        if days.get(table) == 0:
            print(f"{table}: kept (retention 0: forever)")
            continue
        verb = "would be deleted" if args.dry_run else "deleted"
        print(f"{table}: {n} row{'s' if n != 1 else ''} {verb} ({PRUNED[table].format(days=days.get(table))})")
    return 0


def _days(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("a whole number of days, 0 or more")
    return int(text)


def prune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune-history", help="delete old rows of the tracking tables (history, blob location "
                       "hints, dead workers' leases, old pull claims)")
    p.add_argument("--history-days", type=_days, metavar="N", help="history rows finished more than N days ago "
                   "(default $DMI_HISTORY_RETENTION_DAYS, else 400; 0 keeps them); each section and target keeps "
                   "its latest row, latest good row and the first row of its current digest")
    p.add_argument("--locations-days", type=_days, metavar="N", help="blob location hints not seen for N days "
                   "(default $DMI_LOCATIONS_RETENTION_DAYS, else 30; 0 keeps them)")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    p.add_argument("--db", help="SQLAlchemy URL of the tracking database (default: the dmi_tracking connection, "
                   "else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db)")
    p.add_argument("--conn-id", default="dmi_tracking", help="tracking connection id (default dmi_tracking)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=cmd_prune_history)
