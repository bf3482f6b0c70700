"""The tracking tables: one history row per image per run, one state row per target reference."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 4
# Columns added after version 1, as (table, column, SQL type): added in place to an older database.
ADDED_IN_2 = (("dmi_mirror_history", "ratelimit_limit", "INTEGER"),
              ("dmi_mirror_history", "ratelimit_source", "VARCHAR(100)"),
              ("dmi_mirror_history", "source_pulls", "INTEGER"),
              ("dmi_mirror_history", "referrers_copied", "INTEGER"),
              ("dmi_mirror_history", "warnings", "TEXT"))
ADDED_IN_3 = (("dmi_mirror_history", "target_kind", "VARCHAR(20)"),
              ("dmi_mirror_state", "target_kind", "VARCHAR(20)"))
ADDED_IN_4 = (("dmi_mirror_history", "verified_by", "TEXT"), ("dmi_blob_locations", "origin", "VARCHAR(255)"))


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "dmi_schema"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class MirrorHistory(Base):
    __tablename__ = "dmi_mirror_history"
    __table_args__ = (Index("ix_dmi_history_target", "target", "finished_at"),
                      Index("ix_dmi_history_run", "dag_id", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    logical_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    section: Mapped[str] = mapped_column(String(250))
    source: Mapped[str] = mapped_column(String(512))
    target: Mapped[str] = mapped_column(String(512))
    source_digest: Mapped[str | None] = mapped_column(String(100))
    target_digest: Mapped[str | None] = mapped_column(String(100))
    platforms: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # copied | unchanged | failed | dry-run | rejected | quarantined
    error: Mapped[str | None] = mapped_column(Text)
    bytes_transferred: Mapped[int] = mapped_column(BigInteger, default=0)
    blobs_copied: Mapped[int] = mapped_column(Integer, default=0)
    blobs_mounted: Mapped[int] = mapped_column(Integer, default=0)
    blobs_skipped: Mapped[int] = mapped_column(Integer, default=0)
    ratelimit_remaining: Mapped[int | None] = mapped_column(Integer)  # the source's pulls left after this image
    ratelimit_limit: Mapped[int | None] = mapped_column(Integer)
    ratelimit_source: Mapped[str | None] = mapped_column(String(100))  # the IP or account Docker Hub counted
    source_pulls: Mapped[int | None] = mapped_column(Integer)  # manifest GETs the source counted as pulls
    referrers_copied: Mapped[int | None] = mapped_column(Integer)  # signatures, SBOMs … written with the image
    warnings: Mapped[str | None] = mapped_column(Text)  # what was skipped without failing the image
    target_kind: Mapped[str | None] = mapped_column(String(20))  # ecr, gar, acr, registry (None: before schema 3)
    verified_by: Mapped[str | None] = mapped_column(Text)  # the fingerprints of the keys that verified it (verify)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PullClaim(Base):
    """Pulls a task is about to spend at a rate-limited source (the budget ledger, shared by every worker):
    claims newer than a HEAD's `ratelimit-remaining` are not in it yet."""

    __tablename__ = "dmi_pull_claims"
    __table_args__ = (Index("ix_dmi_claims_key", "key", "claimed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400))  # source registry | who it counts for (IP or account)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pulls: Mapped[int] = mapped_column(Integer)


class MirrorState(Base):
    __tablename__ = "dmi_mirror_state"

    target: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(String(512))
    dag_id: Mapped[str] = mapped_column(String(250))
    section: Mapped[str] = mapped_column(String(250))
    last_digest: Mapped[str | None] = mapped_column(String(100))
    last_status: Mapped[str] = mapped_column(String(20))
    last_run_id: Mapped[str] = mapped_column(String(250))
    first_mirrored: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_checked: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_changed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    target_kind: Mapped[str | None] = mapped_column(String(20))


class BlobLocation(Base):
    """Where a blob sits at a target registry, for every worker of a fleet (mount hints; see fleet.py)."""

    __tablename__ = "dmi_blob_locations"

    host: Mapped[str] = mapped_column("registry", String(255), primary_key=True)  # `registry` is SQLAlchemy's
    digest: Mapped[str] = mapped_column(String(100), primary_key=True)
    repository: Mapped[str] = mapped_column(String(512), primary_key=True)
    seen: Mapped[float] = mapped_column(Float)  # epoch seconds
    origin: Mapped[str | None] = mapped_column(String(255))  # the source registry whose bytes these are ("": unknown)


class Lease(Base):
    """A right held for a while by one worker's copy: writing one blob at one registry, or one of a registry's
    upload slots. Renewed while held; a dead worker's lease runs out and another takes it."""

    __tablename__ = "dmi_leases"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(512))  # the repository written to, or the worker host
    expires_at: Mapped[float] = mapped_column(Float)  # epoch seconds
