"""Blob locations shared by every worker of a fleet, in the tracking database (PostgreSQL in a real
deployment). Two workers whose sections share a base layer then read it from the source once: the first
takes a lease on writing it, the others wait for that lease and mount what it wrote. Upload slots per
target registry (`target-uploads`) are leases too. A dead worker's leases run out after LEASE seconds, on
the database's clock: a worker whose own clock is off neither takes a live lease nor keeps a dead one.

Everything here is a help, never a condition: when the database cannot be reached, copies go on as if
each worker were alone (the limits are off), and the database is tried again after a back-off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import delete, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from dmi_provider.registry.locations import MAX_HINTS, BlobLocations
from dmi_provider.tracking.database import database_clock
from dmi_provider.tracking.models import BlobLocation, Lease
from dmi_provider.tracking.store import TrackingStore

log = logging.getLogger(__name__)
LEASE = float(os.environ.get("DMI_LEASE_SECONDS", "30"))  # a dead worker's leases free up after this long
POLL = 0.5  # how often a waiting copy looks again
WAIT_LIMIT = 900.0  # a writer alive but stuck this long: copy the blob anyway rather than wait on
RETRY_FIRST, RETRY_MOST = 5.0, 60.0  # after a database error, limits are off this long, doubling per error


class SharedBlobLocations(BlobLocations):
    """BlobLocations in the tracking database. `upload_limit`: uploads at once per target registry across
    the fleet (0: no limit beyond each task's own workers)."""

    def __init__(self, url: str, upload_limit: int = 0, say: Callable[[str], None] | None = None):
        super().__init__(None)
        self.store = TrackingStore(url)
        self.upload_limit = upload_limit
        self.say = say or log.info
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()[:200]
        self._held: set[str] = set()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._state = threading.Lock()  # the back-off below, shared with the renewer thread
        self._retry_at = 0.0  # monotonic: limits are off until then, after a database error
        self._backoff = 0.0  # the last back-off; 0 while the database answers

    # -- the hints -----------------------------------------------------------------------------------
    def holders(self, registry: str, digest: str, origin: str | None = None) -> set[str]:
        found = super().holders(registry, digest, origin)
        known = (or_(BlobLocation.origin.is_(None), BlobLocation.origin.in_(("", origin))) if origin is not None
                 else true())
        rows = self._sql(lambda c: c.execute(
            select(BlobLocation.repository).where(BlobLocation.host == registry, BlobLocation.digest == digest, known)
            .order_by(BlobLocation.seen.desc()).limit(MAX_HINTS)).scalars().all())
        return found | set(rows or ())

    def add(self, registry: str, digest: str, repository: str, origin: str = "") -> None:
        super().add(registry, digest, repository, origin)

        def upsert(c):
            where = (BlobLocation.host == registry, BlobLocation.digest == digest,
                     BlobLocation.repository == repository)
            values = {"seen": time.time(), **({"origin": origin} if origin else {})}  # a known origin is kept
            if not c.execute(update(BlobLocation).where(*where).values(**values)).rowcount:
                c.execute(insert(BlobLocation).values(host=registry, digest=digest, repository=repository,
                                                      seen=time.time(), origin=origin))

        self._sql(upsert, conflict_ok=True)

    def forget(self, registry: str, digest: str, repository: str) -> None:
        super().forget(registry, digest, repository)
        self._sql(lambda c: c.execute(delete(BlobLocation).where(
            BlobLocation.host == registry, BlobLocation.digest == digest, BlobLocation.repository == repository)))

    # -- leases --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, registry: str, digest: str, repository: str) -> Iterator[bool]:
        key, waited, since = f"blob {registry} {digest}", False, time.monotonic()
        while True:
            holder = self._take(key, repository)
            if holder is None:
                break
            if time.monotonic() - since > WAIT_LIMIT:
                self.say(f"  blob {digest[:19]}: {holder}'s writer has held it for {WAIT_LIMIT:.0f}s: copying it too")
                yield True
                return
            if not waited:
                self.say(f"  blob {digest[:19]} is being written to {holder} by another worker: waiting for it")
            waited = True
            time.sleep(POLL)
        try:
            yield waited
        finally:
            self._release(key)

    @contextlib.contextmanager
    def uploading(self, registry: str) -> Iterator[None]:
        if self.upload_limit <= 0:
            yield
            return
        slots = [f"upload {registry} {i}" for i in range(self.upload_limit)]
        key, announced = None, False
        while key is None:
            for slot in random.sample(slots, len(slots)):  # spread over the slots: fewer lost races
                if self._take(slot, self.host) is None:
                    key = slot
                    break
            else:
                if not announced:
                    self.say(f"  all {self.upload_limit} upload slots of {registry} are taken (target-uploads): "
                             "waiting for one")
                    announced = True
                time.sleep(POLL + random.uniform(0, POLL))
        try:
            yield
        finally:
            self._release(key)

    def _take(self, key: str, holder: str) -> str | None:
        """Take the lease `key`: None when taken, else who holds it. Without the database: taken."""
        if self._off():
            return None
        now = self._now()  # set and compared in SQL: this worker's own clock plays no part
        values = {"owner": self.owner, "holder": holder[:512], "expires_at": now + LEASE}
        try:
            self.store.migrate()
            with self.store.engine.begin() as c:
                c.execute(insert(Lease).values(key=key, **values))
        except IntegrityError:
            try:
                with self.store.engine.begin() as c:
                    stolen = c.execute(update(Lease).where(Lease.key == key, Lease.expires_at < now)
                                       .values(**values)).rowcount
                    if not stolen:
                        other = c.execute(select(Lease.holder).where(Lease.key == key)).scalar()
                        self._answered()
                        return other if other is not None else self._take(key, holder)
            except SQLAlchemyError as exc:
                return self._lost(exc)
        except SQLAlchemyError as exc:
            return self._lost(exc)
        self._answered()
        self._held.add(key)
        self._start_renewing()
        return None

    def _release(self, key: str) -> None:
        self._held.discard(key)
        self._sql(lambda c: c.execute(delete(Lease).where(Lease.key == key, Lease.owner == self.owner)))

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew, daemon=True, name="dmi-lease-renewer")
            self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE / 3):
            held = list(self._held)
            if held:
                self._sql(lambda c, held=held: c.execute(update(Lease).where(
                    Lease.key.in_(held), Lease.owner == self.owner).values(expires_at=self._now() + LEASE)))

    # -- the database --------------------------------------------------------------------------------
    def _now(self) -> ColumnElement[float]:
        return database_clock(self.store.engine.dialect.name)

    def _sql(self, work: Callable, conflict_ok: bool = False):
        if self._off():
            return None
        try:
            self.store.migrate()
            with self.store.engine.begin() as c:
                found = work(c)
        except IntegrityError:
            if not conflict_ok:
                raise
            return None  # another worker recorded the same location at the same moment
        except SQLAlchemyError as exc:
            return self._lost(exc)
        self._answered()
        return found

    def _off(self) -> bool:
        """Limits off: the database failed a moment ago and its back-off has not run out yet."""
        return time.monotonic() < self._retry_at

    def _lost(self, exc: Exception) -> str | None:
        """Nobody else holds the lease, as far as this task can tell: it copies as if alone (always None) until
        the back-off runs out. The exception's type only: its text may carry the database's address."""
        with self._state:
            now = time.monotonic()
            if not self._backoff:
                log.warning("shared blob locations unavailable (%s): fleet limits are off, this task copies as if "
                            "it were alone; trying the database again in %.0fs", type(exc).__name__, RETRY_FIRST)
                self._backoff = RETRY_FIRST
            elif now >= self._retry_at:  # a retry failed (not another thread meeting the same outage)
                self._backoff = min(self._backoff * 2, RETRY_MOST)
                log.debug("shared blob locations still unavailable (%s): trying again in %.0fs",
                          type(exc).__name__, self._backoff)
            else:
                return None
            self._retry_at = now + self._backoff
        return None

    def _answered(self) -> None:
        """The database answered: limits are on (again)."""
        if not self._backoff:
            return
        with self._state:
            if self._backoff:
                log.info("shared blob locations available again: fleet limits are back on")
                self._backoff = 0.0

    def close(self) -> None:
        self._stop.set()
        for key in list(self._held):
            self._release(key)
        super().close()
        self.store.close()
