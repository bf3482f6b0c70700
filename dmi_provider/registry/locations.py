"""Where blobs are known to sit, so a later copy can mount instead of reading the source again.

In memory, and optionally in a small SQLite file shared by the processes of one machine (skopeo keeps
a similar blob-info cache). It is only a hint: a mount from a stale location fails harmlessly, the
location is forgotten and the blob is copied. A broken cache file never fails a copy.

A fleet of workers shares them through the tracking database instead (tracking/fleet.py), which also
coordinates who writes a blob and how many uploads one registry takes at once (`writing`, `uploading`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
MAX_HINTS = 5  # the most recently seen repositories per blob


def default_cache_path() -> Path:
    base = os.environ.get("DMI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dmi")
    return Path(base) / "blob-locations.sqlite"


class BlobLocations:
    """Hints: (registry, digest) -> the repositories that hold it, each with its origin (the source registry that
    served its bytes; "" when unknown). A copy mounts only from hints of its own source, or of no known one."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self._memory: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open(Path(path))

    def _open(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS blob_locations (registry TEXT NOT NULL, digest TEXT NOT NULL, "
                       "repository TEXT NOT NULL, seen REAL NOT NULL, PRIMARY KEY (registry, digest, repository))")
            if "origin" not in {row[1] for row in db.execute("PRAGMA table_info(blob_locations)")}:
                db.execute("ALTER TABLE blob_locations ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
            self._db = db
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.debug("blob location cache %s unavailable (%s); keeping locations in memory", path, exc)

    def holders(self, registry: str, digest: str, origin: str | None = None) -> set[str]:
        """The repositories of `registry` holding `digest`; `origin`: only those whose bytes came from that
        source registry, or from no known one (a hostile source's manifest cannot borrow another's layers)."""
        with self._lock:
            held = self._memory.get((registry, digest), {})
            found = {r for r, o in held.items() if origin is None or o in ("", origin)}
            if self._db is not None:
                try:
                    rows = self._db.execute(
                        "SELECT repository FROM blob_locations WHERE registry = ? AND digest = ? AND (? IS NULL OR "
                        "origin IN ('', ?)) ORDER BY seen DESC LIMIT ?",
                        (registry, digest, origin, origin, MAX_HINTS)).fetchall()
                    found.update(r[0] for r in rows)
                except sqlite3.Error as exc:
                    log.debug("blob location cache read failed: %s", exc)
            return found

    def add(self, registry: str, digest: str, repository: str, origin: str = "") -> None:
        """A hint; `origin`: the source registry whose bytes were written there ("": unknown, an origin known
        already is kept)."""
        with self._lock:
            held = self._memory.setdefault((registry, digest), {})
            held[repository] = origin or held.get(repository, "")
            if self._db is not None:
                try:
                    self._db.execute("INSERT INTO blob_locations (registry, digest, repository, seen, origin) VALUES "
                                     "(?, ?, ?, ?, ?) ON CONFLICT (registry, digest, repository) DO UPDATE SET seen = "
                                     "excluded.seen, origin = CASE WHEN excluded.origin = '' THEN origin ELSE "
                                     "excluded.origin END", (registry, digest, repository, time.time(), origin))
                except sqlite3.Error as exc:
                    log.debug("blob location cache write failed: %s", exc)

    def forget(self, registry: str, digest: str, repository: str) -> None:
        with self._lock:
            self._memory.get((registry, digest), {}).pop(repository, None)
            if self._db is not None:
                try:
                    self._db.execute("DELETE FROM blob_locations WHERE registry = ? AND digest = ? AND repository = ?",
                                     (registry, digest, repository))
                except sqlite3.Error as exc:
                    log.debug("blob location cache write failed: %s", exc)

    @contextlib.contextmanager
    def writing(self, registry: str, digest: str, repository: str) -> Iterator[bool]:
        """Held while this copy reads a blob from the source and writes it to `registry`. Yields whether it
        waited for another writer of that blob (which may have placed it meanwhile: look again). One
        machine's copies coordinate in memory (copy._first_writer); a fleet's through its database."""
        yield False

    @contextlib.contextmanager
    def uploading(self, registry: str) -> Iterator[None]:
        """Held during one blob upload to `registry`: a fleet-wide limit where the store is shared."""
        yield

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
