"""Record mirror outcomes and read them back. The database is any SQLAlchemy URL (SQLite, PostgreSQL)."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, inspect, or_, select, text, true, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session

from dmi_provider.tracking.claims import SeenLimit, claim_pulls
from dmi_provider.tracking.database import TrackingError, busy_timeout, open_engine, tracking_error, where
from dmi_provider.tracking.models import (
    ADDED_IN_2,
    ADDED_IN_3,
    ADDED_IN_4,
    SCHEMA_VERSION,
    Base,
    MirrorHistory,
    MirrorState,
    SchemaVersion,
)
from dmi_provider.tracking.outcome import STATUSES, MirrorOutcome, default_url, utc

__all__ = ["STATUSES", "MirrorOutcome", "SeenLimit", "TrackingError", "TrackingStore", "claim_pulls", "default_url",
           "when"]

MIGRATE_ATTEMPTS = 8


def _upgrade(conn: Connection, found: int) -> None:
    """Bring an older database to this schema in place: columns are only ever added, rows kept."""
    have = {(t, c["name"]) for t in ("dmi_mirror_history", "dmi_mirror_state", "dmi_blob_locations")
            for c in inspect(conn).get_columns(t)}
    added = (ADDED_IN_2 if found < 2 else ()) + (ADDED_IN_3 if found < 3 else ()) + (ADDED_IN_4 if found < 4 else ())
    for table, column, sql_type in added:
        if (table, column) not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
    conn.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))


def _lost_race(exc: Exception, waited: bool) -> bool:
    """Whether another process creating the tables at the same moment explains `exc`. SQLite's "locked" at
    once breaks a deadlock between two creators (worth another try); after its busy timeout was waited out,
    someone holds the database, and trying again would only wait as long again."""
    message = str(exc).lower()
    if "locked" in message:
        return not waited
    return any(word in message for word in ("already exists", "unique", "duplicate"))


def _update_state(session: Session, outcome: MirrorOutcome, now: datetime, state: MirrorState | None
                  ) -> MirrorState:
    if state is None:
        state = MirrorState(target=outcome.target, first_mirrored=None, last_changed=None, last_digest=None)
        session.add(state)
    state.source, state.dag_id, state.section = outcome.source, outcome.dag_id, outcome.section
    state.target_kind = outcome.target_kind or state.target_kind
    state.last_status, state.last_run_id, state.last_checked = outcome.status, outcome.run_id, now
    digest = outcome.target_digest if outcome.status in ("copied", "unchanged") else None
    if digest:
        if state.first_mirrored is None:
            state.first_mirrored = now
        if digest != state.last_digest:
            state.last_digest, state.last_changed = digest, now
    return state


def when(value: object, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A timestamp of the tracking tables for people; '-' for none."""
    return value.strftime(fmt) if isinstance(value, datetime) else "-"


def _row(obj: object) -> dict:
    out = {c.key: getattr(obj, c.key) for c in obj.__table__.columns}  # type: ignore[attr-defined]
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in out.items()}


@dataclass(frozen=True)
class HistoryFilter:
    """Which history rows: `image` (in target or source), exact `target`, `status`, a time range, one DAG
    or several (`dag_ids`)."""

    image: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    dag_id: str | None = None
    target: str | None = None
    dag_ids: Iterable[str] | None = None


class TrackingStore:
    """The tracking tables of one database. `read_only` (the UI) never creates or changes anything:
    a database without the tables reads as empty."""

    def __init__(self, url: str, *, read_only: bool = False):
        self.url = url
        self.read_only = read_only
        self.busy_timeout = busy_timeout()
        self.engine: Engine = open_engine(url, self.busy_timeout)
        self._ready = False

    def migrate(self) -> bool:
        """Create the tables on first use (safe when several processes do it at once); refuse a
        database from a newer DMI. Read-only: only check, and say whether the tables are there."""
        if self._ready:
            return True
        if self.read_only:
            if not inspect(self.engine).has_table(SchemaVersion.__tablename__):
                return False
            self._check_version()
            self._ready = True
            return True
        for attempt in range(MIGRATE_ATTEMPTS):
            started = time.monotonic()
            try:
                self._create()
                break
            except (OperationalError, IntegrityError, ProgrammingError) as exc:
                # Another process created a table or the version row between our check and our write.
                waited = time.monotonic() - started >= 0.9 * self.busy_timeout
                if attempt + 1 == MIGRATE_ATTEMPTS or not _lost_race(exc, waited):
                    raise
                time.sleep(random.uniform(0.05, 0.3))
        self._check_version()
        self._ready = True
        return True

    def _create(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # one creator at a time; the lock ends with the transaction
                conn.execute(text("SELECT pg_advisory_xact_lock(7417001)"))
            Base.metadata.create_all(conn)
            found = conn.execute(select(func.max(SchemaVersion.version))).scalar()
            if found is None:
                conn.execute(insert(SchemaVersion).values(version=SCHEMA_VERSION))
            elif found < SCHEMA_VERSION:
                _upgrade(conn, found)

    @property
    def where(self) -> str:
        return where(self.engine)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLAlchemy's errors as a TrackingError: one line naming the database and what went wrong."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise tracking_error(exc, self.engine, self.busy_timeout) from exc

    def _check_version(self) -> None:
        with Session(self.engine) as session:
            found = session.scalar(select(func.max(SchemaVersion.version)))
        where = self.where
        if found is not None and found > SCHEMA_VERSION:
            raise RuntimeError(f"tracking database {where} has schema {found}, newer than this DMI's "
                               f"{SCHEMA_VERSION}: upgrade DMI")
        if found is not None and found < SCHEMA_VERSION and self.read_only:
            raise RuntimeError(f"tracking database {where} has schema {found}, older than this DMI's "
                               f"{SCHEMA_VERSION}: the next mirror task (or `dmi history`) upgrades it in place")

    def record(self, outcome: MirrorOutcome) -> None:
        """The run's history row for the target (replaced if this run recorded it before: a retried record
        task writes no duplicate), and the target's state row, in one transaction."""
        self.record_many([outcome])

    def record_many(self, outcomes: Sequence[MirrorOutcome]) -> None:
        """Rows for many targets in one transaction (a run's planning settles hundreds at once)."""
        for outcome in outcomes:
            if outcome.status not in STATUSES:
                raise ValueError(f"status {outcome.status!r} is not one of {STATUSES}")
        if self.read_only:
            raise RuntimeError("this tracking store is read-only")
        if not outcomes:
            return
        with self._guard():
            self._record_many(outcomes)

    def _record_many(self, outcomes: Sequence[MirrorOutcome]) -> None:
        self.migrate()
        now = datetime.now(UTC)
        targets = sorted({o.target for o in outcomes})
        with Session(self.engine) as session, session.begin():
            # One query each for the rows this run wrote before (a retried task) and for the state rows.
            runs = {(o.dag_id, o.run_id) for o in outcomes}
            earlier = session.scalars(select(MirrorHistory).where(
                or_(*[(MirrorHistory.dag_id == d) & (MirrorHistory.run_id == r) for d, r in runs]),
                MirrorHistory.target.in_(targets))).all()
            mine = {(o.dag_id, o.run_id, o.target) for o in outcomes}
            for row in earlier:
                if (row.dag_id, row.run_id, row.target) in mine:
                    session.delete(row)
            states = {s.target: s for s in session.scalars(
                select(MirrorState).where(MirrorState.target.in_(targets)).with_for_update())}
            for outcome in outcomes:
                values = asdict(outcome)
                values["finished_at"] = utc(outcome.finished_at) or now
                values["started_at"] = utc(outcome.started_at)
                values["logical_date"] = utc(outcome.logical_date)
                session.add(MirrorHistory(**values))
                if outcome.status != "dry-run":
                    states[outcome.target] = _update_state(session, outcome, now, states.get(outcome.target))

    # -- queries ---------------------------------------------------------------------------------
    def history(self, limit: int = 500, **filters: Any) -> list[dict]:
        """Newest first; every filter (HistoryFilter's fields, as keywords) runs in SQL before the limit."""
        if not self.migrate():
            return []
        where = HistoryFilter(**filters)
        query = select(MirrorHistory).order_by(MirrorHistory.finished_at.desc(), MirrorHistory.id.desc())
        if where.dag_id:
            query = query.where(MirrorHistory.dag_id == where.dag_id)
        if where.dag_ids is not None:
            query = query.where(MirrorHistory.dag_id.in_(list(where.dag_ids)))
        if where.target:
            query = query.where(MirrorHistory.target == where.target)
        if where.image:
            pattern = f"%{where.image}%"
            query = query.where(MirrorHistory.target.like(pattern) | MirrorHistory.source.like(pattern))
        if where.status:
            query = query.where(MirrorHistory.status == where.status)
        if where.since:
            query = query.where(MirrorHistory.finished_at >= where.since)
        if where.until:
            query = query.where(MirrorHistory.finished_at <= where.until)
        with Session(self.engine) as session:
            return [_row(r) for r in session.scalars(query.limit(limit))]

    def last_good(self, target: str) -> dict | None:
        """The latest copied or unchanged row of a target reference."""
        with self._guard():
            if not self.migrate():
                return None
            query = (select(MirrorHistory).where(MirrorHistory.target == target,
                                                 MirrorHistory.status.in_(("copied", "unchanged")))
                     .order_by(MirrorHistory.finished_at.desc(), MirrorHistory.id.desc()).limit(1))
            with Session(self.engine) as session:
                row = session.scalars(query).first()
                return _row(row) if row is not None else None

    def state(self, dag_ids: Iterable[str] | None = None, section: str | None = None,
              target: str | None = None) -> list[dict]:
        if not self.migrate():
            return []
        query = select(MirrorState).order_by(MirrorState.target)
        if section:
            query = query.where(MirrorState.section == section)
        if target:
            query = query.where(MirrorState.target == target)
        if dag_ids is not None:
            query = query.where(MirrorState.dag_id.in_(list(dag_ids)))
        with Session(self.engine) as session:
            return [_row(r) for r in session.scalars(query)]

    def timeline(self, target: str, dag_ids: Iterable[str] | None = None) -> list[dict]:
        """Every digest a target has had, with when it was first and last seen."""
        if not self.migrate():
            return []
        query = (select(MirrorHistory.target_digest, func.min(MirrorHistory.finished_at),
                        func.max(MirrorHistory.finished_at), func.count())
                 .where(MirrorHistory.target == target, MirrorHistory.target_digest.is_not(None),
                        MirrorHistory.status.in_(("copied", "unchanged")),
                        MirrorHistory.dag_id.in_(list(dag_ids)) if dag_ids is not None else true())
                 .group_by(MirrorHistory.target_digest).order_by(func.min(MirrorHistory.finished_at)))
        with Session(self.engine) as session:
            return [{"digest": d, "first_seen": utc(a), "last_seen": utc(b), "runs": n}
                    for d, a, b, n in session.execute(query)]

    def budget(self, dag_ids: Iterable[str] | None = None, since: datetime | None = None,
               limit: int = 2000) -> list[dict]:
        """The pull budget after each image, oldest first: rows whose source sent rate-limit headers, with
        the source registry (`registry`) they count against."""
        if not self.migrate():
            return []
        query = (select(MirrorHistory.finished_at, MirrorHistory.source, MirrorHistory.ratelimit_remaining,
                        MirrorHistory.ratelimit_limit, MirrorHistory.ratelimit_source, MirrorHistory.dag_id,
                        MirrorHistory.run_id, MirrorHistory.section, MirrorHistory.source_pulls)
                 .where(MirrorHistory.ratelimit_remaining.is_not(None))
                 .order_by(MirrorHistory.finished_at.desc(), MirrorHistory.id.desc()).limit(limit))
        if dag_ids is not None:
            query = query.where(MirrorHistory.dag_id.in_(list(dag_ids)))
        if since is not None:
            query = query.where(MirrorHistory.finished_at >= since)
        with Session(self.engine) as session:
            rows = [{"finished_at": utc(at), "registry": source.split("/", 1)[0], "remaining": remaining,
                     "limit": limit_, "counted_for": who, "dag_id": dag_id, "run_id": run_id, "section": section,
                     "pulls": pulls} for at, source, remaining, limit_, who, dag_id, run_id, section, pulls
                    in session.execute(query)]
        return rows[::-1]

    def recent(self, dag_ids: Iterable[str] | None = None, per_target: int = 20) -> dict[str, list[dict]]:
        """The latest `per_target` runs of each target, oldest first: status, when, run, bytes (the strips of
        the state page), in one query."""
        if not self.migrate():
            return {}
        number = func.row_number().over(partition_by=MirrorHistory.target,
                                        order_by=(MirrorHistory.finished_at.desc(), MirrorHistory.id.desc()))
        inner = select(MirrorHistory.target, MirrorHistory.status, MirrorHistory.finished_at, MirrorHistory.dag_id,
                       MirrorHistory.run_id, MirrorHistory.bytes_transferred, number.label("n"))
        if dag_ids is not None:
            inner = inner.where(MirrorHistory.dag_id.in_(list(dag_ids)))
        ranked = inner.subquery()
        query = select(ranked).where(ranked.c.n <= per_target).order_by(ranked.c.target, ranked.c.n.desc())
        out: dict[str, list[dict]] = {}
        with Session(self.engine) as session:
            for target, status, at, dag_id, run_id, nbytes, _n in session.execute(query):
                out.setdefault(target, []).append({"status": status, "finished_at": utc(at), "dag_id": dag_id,
                                                   "run_id": run_id, "bytes": nbytes or 0})
        return out

    def totals(self, dag_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Bytes written and images copied over the whole history."""
        if not self.migrate():
            return {"bytes": 0, "copies": 0}
        query = select(func.coalesce(func.sum(MirrorHistory.bytes_transferred), 0),
                       func.count().filter(MirrorHistory.status == "copied"))
        if dag_ids is not None:
            query = query.where(MirrorHistory.dag_id.in_(list(dag_ids)))
        with Session(self.engine) as session:
            nbytes, copies = session.execute(query).one()
        return {"bytes": int(nbytes or 0), "copies": int(copies or 0)}

    def runs(self, dag_ids: Iterable[str] | None = None, dag_id: str | None = None, limit: int = 100) -> list[dict]:
        """DAG runs with how many images each copied, found unchanged, failed; the latest `limit`, oldest first."""
        if not self.migrate():
            return []
        counts = {s: func.count().filter(MirrorHistory.status == s).label(s.replace("-", "_")) for s in STATUSES}
        nbytes = func.coalesce(func.sum(MirrorHistory.bytes_transferred), 0)
        query = (select(MirrorHistory.dag_id, MirrorHistory.run_id, func.min(MirrorHistory.started_at),
                        func.max(MirrorHistory.finished_at), nbytes, *counts.values())
                 .group_by(MirrorHistory.dag_id, MirrorHistory.run_id)
                 .order_by(func.max(MirrorHistory.finished_at).desc()).limit(limit))
        if dag_id:
            query = query.where(MirrorHistory.dag_id == dag_id)
        if dag_ids is not None:
            query = query.where(MirrorHistory.dag_id.in_(list(dag_ids)))
        with Session(self.engine) as session:
            rows = [{"dag_id": d, "run_id": r, "started_at": utc(a), "finished_at": utc(b), "bytes": int(n or 0),
                     **{s: int(c) for s, c in zip(STATUSES, rest, strict=True)}}
                    for d, r, a, b, n, *rest in session.execute(query)]
        return rows[::-1]

    def prune(self, history_days: int | None = None, locations_days: int | None = None, *, dry_run: bool = False,
              limit: int | None = None) -> dict[str, int]:
        """Old rows deleted per table (tracking/retention.py, README's "Retention")."""
        from dmi_provider.tracking.retention import prune

        with self._guard():
            return prune(self, history_days, locations_days, dry_run=dry_run, limit=limit)

    def prune_daily(self) -> dict[str, int] | None:
        """`prune` at most once a day per database, by whoever takes the day's lease; None: not this time."""
        from dmi_provider.tracking.retention import prune_daily

        with self._guard():
            return prune_daily(self)

    def close(self) -> None:
        self.engine.dispose()
