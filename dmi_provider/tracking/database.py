"""Opening a tracking database, and its failures as one line: how long SQLite waits for another writer,
how long PostgreSQL is given to answer, and which errors a later try may mend."""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from sqlalchemy import Float, cast, create_engine, event, extract, func, literal
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.elements import ColumnElement

from dmi_provider.errors import DmiError, first_line

BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another writer (DMI_TRACKING_BUSY_TIMEOUT): a run's tasks record at once
CONNECT_TIMEOUT = 10  # seconds to reach a PostgreSQL server, unless the URL says (the OS would wait minutes)
# Errors that trying again cannot mend, though the driver calls them operational.
_PERMANENT = ("authentication failed", "does not exist", "readonly database", "read-only", "permission denied",
              "unable to open database file", "no such table")


class Database(Protocol):
    """What the pull claims and retention need of a TrackingStore (they are apart from it, it uses them)."""

    engine: Engine
    read_only: bool

    def migrate(self) -> bool: ...


class TrackingError(DmiError):
    """The tracking database could not be read or written (locked, unreachable, refused): one line that names
    it, its password hidden. `retryable`: whether a later try may find it working."""

    def __init__(self, where: str, reason: str, *, retryable: bool):
        super().__init__(f"tracking database {where}: {reason}", retryable=retryable)
        self.where, self.reason = where, reason


def busy_timeout() -> float:
    value = os.environ.get("DMI_TRACKING_BUSY_TIMEOUT", "").strip()
    try:
        seconds = float(value) if value else BUSY_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise DmiError(f"DMI_TRACKING_BUSY_TIMEOUT must be seconds from 0 to 3600, not {value!r}")
    return seconds


def open_engine(url: str, busy: float) -> Engine:
    address = make_url(url)
    connect_args: dict[str, Any] = {}
    if (address.get_backend_name() == "postgresql" and address.get_driver_name() in ("psycopg2", "psycopg")
            and "connect_timeout" not in address.query):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    engine = create_engine(address, pool_pre_ping=True, future=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):
            conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
    return engine


def where(engine: Engine) -> str:
    """The database for messages: its URL with the password hidden."""
    return engine.url.render_as_string(hide_password=True)


def tracking_error(exc: SQLAlchemyError, engine: Engine, busy: float) -> TrackingError:
    """SQLAlchemy's error as one line naming the database and what went wrong."""
    reason = first_line(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    low = reason.lower()
    if engine.dialect.name == "sqlite" and "locked" in low:
        reason += (f" (another process held it for longer than the busy timeout, {busy:g}s: "
                   "DMI_TRACKING_BUSY_TIMEOUT)")
    transient = isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout))
    return TrackingError(where(engine), reason, retryable=transient and not any(p in low for p in _PERMANENT))


def database_clock(dialect: str) -> ColumnElement[float]:
    """Now in epoch seconds, as the database tells it: one clock for every worker of the fleet."""
    if dialect == "postgresql":
        return cast(extract("epoch", func.now()), Float)
    if dialect == "sqlite":
        return (func.julianday("now") - 2440587.5) * 86400.0
    return literal(time.time(), Float)  # a database without a known clock expression: this worker's own
