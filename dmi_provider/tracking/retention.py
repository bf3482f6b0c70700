"""Retention (README, "Retention"): what `dmi prune-history` and the record tasks' daily prune delete from the
tracking tables that would otherwise only grow."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from dmi_provider.errors import DmiError
from dmi_provider.tracking.claims import LONGEST_WINDOW
from dmi_provider.tracking.database import Database, database_clock
from dmi_provider.tracking.models import BlobLocation, Lease, MirrorHistory, MirrorState, PullClaim

HISTORY_DAYS = 400  # history rows finished longer ago (DMI_HISTORY_RETENTION_DAYS; 0: kept forever)
LOCATIONS_DAYS = 30  # blob location hints not seen for this long (DMI_LOCATIONS_RETENTION_DAYS; 0: kept forever)
FOREVER = 36500  # days: a longer retention is this one
LEASE_GRACE = 3600.0  # a lease expired this long ago was a dead worker's
PRUNE_EVERY = 24 * 3600.0  # the daily prune: once per database per this many seconds ...
PRUNE_BATCH = 20_000  # ... at most this many rows per table (a first prune of years of history stays light) ...
PRUNE_SOON = 3600.0  # ... and when a table had more, again after this long
PRUNE_LEASE = "prune tracking tables"  # the key in dmi_leases of whoever prunes today


def _days(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise DmiError(f"{name} must be a whole number of days (0: keep forever), not {value!r}")
    return int(value)


def retention(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(history days, blob location days): DMI_HISTORY_RETENTION_DAYS and DMI_LOCATIONS_RETENTION_DAYS, else
    400 and 30; 0 keeps that table forever."""
    environ = os.environ if environ is None else environ
    return (_days(environ, "DMI_HISTORY_RETENTION_DAYS", HISTORY_DAYS),
            _days(environ, "DMI_LOCATIONS_RETENTION_DAYS", LOCATIONS_DAYS))


def prune(store: Database, history_days: int | None = None, locations_days: int | None = None, *,
          dry_run: bool = False, limit: int | None = None) -> dict[str, int]:
    """Delete, per table, what only grew (how many rows; `dry_run`: how many would go): history rows
    finished more than `history_days` ago, except each section and target's latest row, its latest
    copied/unchanged row (what the docker engine compares with) and the first row of the target's current
    digest (since when it has it); blob location hints not seen for `locations_days`; leases expired more
    than an hour ago; pull claims older than the longest pull window. Days: None, from the environment
    (`retention`); 0, that table is kept. `limit`: at most so many rows per table."""
    if store.read_only:
        raise RuntimeError("this tracking store is read-only")
    default_history, default_locations = retention()
    # Nothing is older than a hundred years: longer retentions are that (and datetime stays in range).
    history_days = min(default_history if history_days is None else history_days, FOREVER)
    locations_days = min(default_locations if locations_days is None else locations_days, FOREVER)
    now = datetime.now(UTC)
    epoch = now.timestamp()
    doomed: dict[str, tuple[Any, ColumnElement[bool] | None]] = {
        "dmi_mirror_history": (MirrorHistory, _old_history(now - timedelta(days=history_days))
                               if history_days else None),
        "dmi_blob_locations": (BlobLocation, BlobLocation.seen < epoch - locations_days * 86400
                               if locations_days else None),
        "dmi_leases": (Lease, Lease.expires_at < database_clock(store.engine.dialect.name) - LEASE_GRACE),
        "dmi_pull_claims": (PullClaim, PullClaim.claimed_at < now - timedelta(seconds=LONGEST_WINDOW)),
    }
    store.migrate()
    return {table: 0 if where is None else _delete(store, model, where, dry_run, limit)
            for table, (model, where) in doomed.items()}


def _delete(store: Database, model: Any, where: ColumnElement[bool], dry_run: bool, limit: int | None) -> int:
    with store.engine.begin() as conn:  # one transaction per table: SQLite's write lock is held briefly
        if dry_run:
            return int(conn.execute(select(func.count()).select_from(model).where(where)).scalar() or 0)
        if limit is not None:  # by primary key: DELETE … LIMIT is not SQL
            keys = list(model.__table__.primary_key.columns)
            chosen = select(*keys).where(where).limit(limit)
            where = keys[0].in_(chosen) if len(keys) == 1 else tuple_(*keys).in_(chosen)
        return int(conn.execute(delete(model).where(where)).rowcount or 0)


def prune_daily(store: Database) -> dict[str, int] | None:
    """`prune` with the environment's retention, at most once a day per database, by whoever takes the day's
    lease in dmi_leases (one read when another took it), PRUNE_BATCH rows per table at most (when a table
    had more: again in an hour). None: not this time."""
    if store.read_only:
        return None
    store.migrate()
    if not _take_lease(store):
        return None
    done = prune(store, limit=PRUNE_BATCH)
    if any(n >= PRUNE_BATCH for n in done.values()):
        with store.engine.begin() as conn:
            soon = database_clock(store.engine.dialect.name) + PRUNE_SOON
            conn.execute(update(Lease).where(Lease.key == PRUNE_LEASE).values(expires_at=soon))
    return done


def _take_lease(store: Database) -> bool:
    """Today's prune for whoever takes the lease first; on the database's clock, as the fleet's leases."""
    with store.engine.connect() as conn:
        now = float(conn.execute(select(database_clock(store.engine.dialect.name))).scalar_one())
        held = conn.execute(select(Lease.expires_at).where(Lease.key == PRUNE_LEASE)).scalar()
    if held is not None and held > now:
        return False
    values = {"owner": f"prune {os.getpid()}", "holder": socket.gethostname()[:512], "expires_at": now + PRUNE_EVERY}
    try:
        with store.engine.begin() as conn:
            if held is None:
                conn.execute(insert(Lease).values(key=PRUNE_LEASE, **values))
                return True
            return bool(conn.execute(update(Lease).where(Lease.key == PRUNE_LEASE, Lease.expires_at <= now)
                                     .values(**values)).rowcount)
    except IntegrityError:
        return False  # another worker took it at the same moment


def _old_history(cutoff: datetime) -> ColumnElement[bool]:
    """History rows finished before `cutoff` that no question needs: not a section and target's latest row,
    nor its latest good one, nor the first good row of the target's current digest."""
    history, good = MirrorHistory, MirrorHistory.status.in_(("copied", "unchanged"))
    newest = (history.finished_at.desc(), history.id.desc())
    latest = select(history.id, func.row_number().over(partition_by=(history.section, history.target),
                                                       order_by=newest).label("n")).subquery()
    latest_good = select(history.id, func.row_number().over(partition_by=(history.section, history.target),
                                                            order_by=newest).label("n")).where(good).subquery()
    since = (select(history.id, func.row_number().over(partition_by=history.target,
                                                       order_by=(history.finished_at, history.id)).label("n"))
             .join(MirrorState, and_(MirrorState.target == history.target,
                                     MirrorState.last_digest == history.target_digest))
             .where(good).subquery())
    keep = [select(q.c.id).where(q.c.n == 1) for q in (latest, latest_good, since)]
    return and_(history.finished_at < cutoff, history.id.not_in(keep[0].union(*keep[1:])))
