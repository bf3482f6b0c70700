"""One image's outcome of one run, as the tracking tables keep it. No SQLAlchemy here: the CLI and the
operators build outcomes before (or without) opening a database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

# rejected: its signatures or attestations did not verify (verify), the target tag untouched; quarantined: so,
# and tagged in the quarantine repository instead.
STATUSES = ("copied", "unchanged", "failed", "dry-run", "rejected", "quarantined")


@dataclass
class MirrorOutcome:
    dag_id: str
    run_id: str
    section: str
    source: str
    target: str
    status: str
    logical_date: datetime | None = None
    source_digest: str | None = None
    target_digest: str | None = None
    platforms: str = ""
    error: str | None = None
    bytes_transferred: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    ratelimit_remaining: int | None = None
    ratelimit_limit: int | None = None
    ratelimit_source: str | None = None
    source_pulls: int = 0
    referrers_copied: int = 0
    warnings: str | None = None
    target_kind: str | None = None  # ecr, gar, acr, registry
    verified_by: str | None = None  # verify: the fingerprints of the keys whose signatures were accepted
    started_at: datetime | None = None
    finished_at: datetime | None = None


def default_url(db_path: str | None = None, airflow_home: str | None = None) -> str:
    """SQLite at DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db."""
    path = db_path or os.path.join(airflow_home or os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"),
                                   "dmi", "tracking.db")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@overload
def utc(value: datetime) -> datetime: ...


@overload
def utc(value: datetime | None) -> datetime | None: ...


def utc(value: datetime | None) -> datetime | None:
    """A timestamp the database gave back, in UTC (SQLite keeps none of the zone)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
