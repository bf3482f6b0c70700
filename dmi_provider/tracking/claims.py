"""Pull budget claims: DMI's own spending of a source's pull limit, shared by every worker through the
tracking database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from dmi_provider.tracking.database import Database
from dmi_provider.tracking.models import PullClaim
from dmi_provider.tracking.outcome import utc

LONGEST_WINDOW = 31 * 24 * 3600  # seconds: a pull window is clamped to this, older claims count for nothing
CLAIM_SLACK = 10.0  # seconds a claimed pull may take to show in a registry's ratelimit-remaining


@dataclass(frozen=True)
class SeenLimit:
    """A source's pull limit as its headers last said: `remaining` of `limit` per `window` seconds, read at
    `seen_at` (epoch seconds)."""

    remaining: int
    seen_at: float
    limit: int
    window: int


def claim_pulls(store: Database, key: str, needed: int, seen: SeenLimit, reserve: int) -> float:
    """Claim `needed` pulls of `key`'s budget: 0 when claimed, else the seconds until enough come back.

    Claims made since the headers were read (less CLAIM_SLACK) are not in `seen.remaining` and are taken
    off. One claimer at a time: PostgreSQL serialises on an advisory lock, SQLite on the write lock the
    claim's own insert takes (then it looks at the claims committed before it)."""
    store.migrate()
    now, remaining, window = datetime.now(UTC), seen.remaining, min(max(seen.window, 1), LONGEST_WINDOW)
    since = datetime.fromtimestamp(seen.seen_at - min(CLAIM_SLACK, window / 10), UTC)
    with Session(store.engine) as session, session.begin():
        if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            session.execute(text("SELECT pg_advisory_xact_lock(7417002)"))
        # Only this source's old claims: another source's window says nothing of this one's.
        session.execute(delete(PullClaim).where(PullClaim.key == key,
                                                PullClaim.claimed_at < now - timedelta(seconds=window)))
        mine = PullClaim(key=key, claimed_at=now, pulls=needed)
        session.add(mine)
        session.flush()
        recent = session.scalars(select(PullClaim).where(PullClaim.key == key, PullClaim.id != mine.id)
                                 .order_by(PullClaim.claimed_at)).all()
        recent = list(recent)
        unseen = sum(c.pulls for c in recent if utc(c.claimed_at) >= since and c.id < mine.id)
        if remaining - unseen - needed >= reserve:
            return 0.0
        session.delete(mine)
        deficit = needed + reserve - (remaining - unseen)
        return _wait(recent, deficit, seen.limit, window, now)


def _wait(claims: Sequence[PullClaim], deficit: int, limit: int, window: int, now: datetime) -> float:
    """When the oldest claims of the window have aged out enough to pay the deficit (DMI's own spending
    is known exactly); pulls others spent from the same IP come back spread over the window."""
    freed = 0
    for claim in claims:
        freed += claim.pulls
        if freed >= deficit:
            return max((utc(claim.claimed_at) + timedelta(seconds=window) - now).total_seconds() + 1.0, 1.0)
    rest = deficit - freed
    return min(max(rest * window / max(limit, 1), 1.0), float(window))
