"""Copying the blobs of one image (or referrer) from its source repository to its target repository: each
blob once — HEAD at the target, else a cross-repository mount, else GET streamed into one PUT with size and
digest checked on the way (memory stays flat)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import httpx

from dmi_provider.registry.client import RegistryClient, RetryPolicy
from dmi_provider.registry.errors import DigestMismatch, NotFound, RegistryError, Stalled
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.manifest import Descriptor
from dmi_provider.registry.network import transport_error
from dmi_provider.registry.wire import body_chunks, shown_url

log = logging.getLogger(__name__)
T = TypeVar("T")
PROGRESS_EVERY = 5.0  # seconds between progress lines of one large blob
STALL_TIMEOUT = 60.0  # stall-timeout's default: seconds a transfer may go without STALL_BYTES of progress
STALL_BYTES = 64 * 1024  # so a source trickling a byte now and then is a stall too (about 1 KiB/s)
WAIT_LIMIT = 900.0  # the longest one copy waits for another copy of the same blob in this process


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


@dataclass
class Moved:
    """What a blob copy did: blobs by outcome (copied, mounted, skipped) and bytes moved."""

    counts: Counter[str]
    nbytes: int = 0
    error: BaseException | None = None  # the first blob that failed (the others' outcomes still count)

    def check(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass(eq=False)  # an object with a job, compared by identity
class BlobCopy:
    """The blobs of one image between two repositories; `fresh`: the target repository has no tags, so a
    blob is there only if the location hints say so (its HEAD can be skipped)."""

    sc: RegistryClient
    dc: RegistryClient
    src_repo: str
    dst_repo: str
    locations: BlobLocations
    say: Callable[[str], None] = log.info
    workers: int = 4
    fresh: bool = False
    stall: float = STALL_TIMEOUT

    def run(self, blobs: list[Descriptor]) -> Moved:
        moved = Moved(Counter())
        lock = threading.Lock()

        def one(blob: Descriptor) -> None:
            outcome, nbytes = self.copy(blob)
            with lock:
                moved.counts[outcome] += 1
                moved.nbytes += nbytes

        with ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="dmi-blob") as pool:
            # Larger blobs first, so the long transfers overlap with the rest.
            futures = [pool.submit(one, b) for b in sorted(blobs, key=lambda b: -b.size)]
            errors = [f.exception() for f in futures if f.exception() is not None]
        moved.error = errors[0] if errors else None
        return moved

    # -- one blob ----------------------------------------------------------------------------------
    def copy(self, blob: Descriptor) -> tuple[str, int]:
        if blob.foreign:
            self.say(f"  blob {blob.digest[:19]} skipped: non-distributable layer ({mib(blob.size)})")
            return "skipped", 0
        with _first_writer(self.dc.registry, blob.digest, self.dst_repo, self.sc.registry) as other:
            return self._outlasting(blob, other)

    def _outlasting(self, blob: Descriptor, other: str | None) -> tuple[str, int]:
        """The whole copy of a blob (its HEADs and mounts too, not only its bytes) waits an outage out, for the
        policy's time: a target restarting as a blob starts is survived as one restarting mid-blob is."""
        started = time.monotonic()
        return outlast(self.sc.retry, self.say, f"blob {blob.digest[:19]}",
                       lambda: self._copy_once(blob, other, started))

    def _copy_once(self, blob: Descriptor, other: str | None, started: float) -> tuple[str, int]:
        sc, dc, dst_repo, short = self.sc, self.dc, self.dst_repo, blob.digest[:19]
        holders = self.locations.holders(dc.registry, blob.digest, sc.registry) | ({other} if other else set())
        # In a repository without tags a blob is there only if an earlier, failed copy left it (the hints say).
        if (not self.fresh or dst_repo in holders) and dc.blob_exists(dst_repo, blob.digest):
            self.locations.add(dc.registry, blob.digest, dst_repo)
            self.say(f"  blob {short} skipped: already at the target ({mib(blob.size)})")
            return "skipped", 0
        sources = ([self.src_repo] if sc.registry == dc.registry else []) + sorted(holders - {dst_repo})
        mounted, opened = self._mount(blob, sources, "")
        if mounted:
            return "mounted", 0
        with self.locations.writing(dc.registry, blob.digest, dst_repo) as waited:
            # Look again once the lease is ours: another worker may have written the blob while this one
            # waited, or finished and let go of its lease between the look above and this one's take.
            now = self.locations.holders(dc.registry, blob.digest, sc.registry)
            if waited or now - holders:  # find it or mount it from there
                if dst_repo in now and dc.blob_exists(dst_repo, blob.digest):
                    if opened:
                        dc.cancel_upload(dst_repo, opened)
                    self.say(f"  blob {short} skipped: written by another worker meanwhile ({mib(blob.size)})")
                    return "skipped", 0
                later = sorted(now - {dst_repo, *sources})
                mounted, opened = self._mount(blob, later, opened)
                if mounted:
                    return "mounted", 0
            return self._with_retries(blob, opened, started)

    def _mount(self, blob: Descriptor, sources: list[str], opened: str) -> tuple[bool, str]:
        """Mount from the first repository of `sources` that holds the blob. Returns (mounted, the upload a
        refused mount opened: the copy uses it)."""
        dc, dst_repo = self.dc, self.dst_repo
        for from_repo in sources:
            if not (from_repo == self.src_repo and self.sc.registry == dc.registry):
                self._check_source_holds(blob)
            location = dc.mount_blob(dst_repo, blob.digest, from_repo)
            if location is None:
                if opened:
                    dc.cancel_upload(dst_repo, opened)
                self.locations.add(dc.registry, blob.digest, dst_repo)
                self.say(f"  blob {blob.digest[:19]} mounted from {from_repo} ({mib(blob.size)})")
                return True, ""
            if location and opened:
                dc.cancel_upload(dst_repo, location)
            opened = opened or location
            self.locations.forget(dc.registry, blob.digest, from_repo)  # a stale hint
        return False, opened

    def _check_source_holds(self, blob: Descriptor) -> None:
        """A hint names a repository that holds the digest; only the source proves this image may have it.
        A hostile manifest naming another team's private layer would otherwise get it mounted, never asked
        of the source. A HEAD (not a pull), once per process per source repository and blob."""
        key = (self.sc.registry, self.src_repo, blob.digest)
        if key in _SERVED:
            return
        if not self.sc.blob_exists(self.src_repo, blob.digest):
            raise NotFound(f"{self.sc.registry}/{self.src_repo}: the manifest names blob {blob.digest}, which the "
                           "source does not serve: not mounting it from another repository of the target")
        _SERVED.add(key)

    def _with_retries(self, blob: Descriptor, opened: str, started: float) -> tuple[str, int]:
        # The only retry level of a blob's bytes: the GET and the upload inside are sent once per attempt. An
        # outage (no answer, a gateway's 503, a stall) is retried for the policy's whole time, not its count.
        policy, short, attempt = self.sc.retry, blob.digest[:19], 0
        while True:
            try:
                return self._stream(blob, opened)
            except RegistryError as exc:
                exc.spent = True  # this loop's own verdict: the outer one does not try again
                opened = ""  # used (and cancelled on failure) by that try
                attempt += 1
                delay = policy.delay(attempt - 1, exc.retry_after, outage=exc.outage)
                # A same-size digest mismatch may be a bad transfer: one more try, then it is the source's fault.
                again = exc.retryable or (isinstance(exc, DigestMismatch) and exc.size_ok and attempt == 1)
                spent = time.monotonic() - started
                if not again or (attempt >= policy.attempts and not exc.outage) or spent + delay > policy.total:
                    raise
                self.say(f"  blob {short} failed ({exc}); checking the target and retrying from zero in {delay:.1f}s")
                time.sleep(delay)
                try:
                    if self.dc.blob_exists(self.dst_repo, blob.digest):
                        self.locations.add(self.dc.registry, blob.digest, self.dst_repo)
                        return "copied", blob.size
                except RegistryError as down:  # still down: the next attempt's requests wait for it in turn
                    if not down.retryable:
                        raise

    def _stream(self, blob: Descriptor, location: str = "") -> tuple[str, int]:
        sc, dc, short = self.sc, self.dc, blob.digest[:19]
        with _slots(sc, dc), sc.open_blob(self.src_repo, blob.digest, retry=False) as response:
            started = time.monotonic()
            chunks = self._verified(self._read(response, blob), blob, started)
            # A fleet-wide upload slot only once the source's bytes flow: a source that never sends holds none.
            first = next(chunks, None)
            with self.locations.uploading(dc.registry):
                dc.upload_blob(self.dst_repo, blob.digest, blob.size, itertools.chain([first] if first else [], chunks),
                               retry=False, location=location or None)
        elapsed = max(time.monotonic() - started, 1e-6)
        _SERVED.add((sc.registry, self.src_repo, blob.digest))
        self.locations.add(dc.registry, blob.digest, self.dst_repo, sc.registry)  # these bytes came from sc
        self.say(f"  blob {short} copied {mib(blob.size)} in {elapsed:.2f}s ({mib(blob.size / elapsed)}/s)")
        return "copied", blob.size

    def _read(self, response: httpx.Response, blob: Descriptor) -> Iterator[bytes]:
        """The source's body. Stalls are timed on the reads alone: the time the upload spends (a slot wait,
        a PATCH round trip) is not the source's. A connection that breaks mid-body is the source's outage,
        named so (the upload would otherwise report it as the target's)."""
        chunks, seen, marked, blocked = iter(body_chunks(response, None)), 0, 0, 0.0
        while True:
            began = time.monotonic()
            try:
                chunk = next(chunks, None)
            except httpx.HTTPError as exc:  # a TransportError, or a proxy's compression that breaks (DecodingError)
                error = (transport_error(exc, shown_url(str(response.url)), self.sc.network, self.sc.registry)
                         if isinstance(exc, httpx.TransportError) else
                         RegistryError(f"{self.sc.registry}: blob {blob.digest}: {type(exc).__name__}: {exc}",
                                       retryable=True))
                raise _sourced(error, self.sc.registry) from None
            blocked += time.monotonic() - began
            if chunk is None:
                return
            if blocked >= self.stall and seen - marked < STALL_BYTES:  # what came before this chunk, that long
                raise _sourced(Stalled(f"blob {blob.digest}: stalled at {mib(seen)} of {mib(blob.size)}: less than "
                                       f"{STALL_BYTES >> 10} KiB from the source in {blocked:.0f}s (stall-timeout)"),
                               self.sc.registry)
            seen += len(chunk)
            if seen - marked >= STALL_BYTES:
                marked, blocked = seen, 0.0
            yield chunk

    def _verified(self, chunks: Iterable[bytes], blob: Descriptor, started: float) -> Iterator[bytes]:
        """Pass chunks on while hashing; the last chunk is held back until size and digest check out,
        so a corrupted blob never completes its upload."""
        algorithm, _, expected = blob.digest.partition(":")
        short = blob.digest[:19]
        try:
            hasher = hashlib.new(algorithm)
        except ValueError:
            raise RegistryError(f"blob {blob.digest}: unsupported digest algorithm {algorithm!r}") from None
        seen, pending, last_report = 0, b"", started
        for chunk in chunks:
            if not chunk:
                continue
            hasher.update(chunk)
            seen += len(chunk)
            if seen > blob.size:
                raise _sourced(DigestMismatch(f"blob {blob.digest}: more than the {blob.size} bytes its descriptor "
                                              "says"), self.sc.registry)
            if pending:
                yield pending
            pending = chunk
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                rate = seen / max(now - started, 1e-6)
                self.say(f"  blob {short} {mib(seen)} of {mib(blob.size)} ({100 * seen // max(blob.size, 1)}%) "
                         f"at {mib(rate)}/s")
        if seen != blob.size or hasher.hexdigest() != expected:
            raise _sourced(DigestMismatch(f"blob {blob.digest}: received {seen} bytes hashing to {algorithm}:"
                                          f"{hasher.hexdigest()}, expected {blob.size} bytes",
                                          size_ok=seen == blob.size), self.sc.registry)
        if pending:
            yield pending


def outlast(policy: RetryPolicy, say: Callable[[str], None], what: str, step: Callable[[], T]) -> T:
    """`step`, tried again while it meets an outage (no answer, a gateway's 502/503/504), for the policy's
    whole time: the writes of a copy come right after the plan reached both sides, so a registry that stops
    answering is restarting, not misnamed."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return step()
        except RegistryError as exc:
            attempt += 1
            delay = policy.delay(attempt - 1, exc.retry_after, outage=True)
            if not exc.outage or exc.spent or time.monotonic() - started + delay > policy.total:
                raise
            say(f"  {what}: no answer ({exc}); trying again in {delay:.1f}s")
            time.sleep(delay)


def _sourced(error: RegistryError, registry: str) -> RegistryError:
    """An error of the source's body, raised inside the target's upload: said to be the source's."""
    error.registry, error.side = registry, "source"
    return error


# (source registry, repository, digest) seen served by the source in this process: mounts need no HEAD.
_SERVED: set[tuple[str, str, str]] = set()
# Blobs being written right now: (target registry, digest, source registry) -> (done, repository written to).
_WRITING: dict[tuple[str, str, str], tuple[threading.Event, str]] = {}
_WRITING_LOCK = threading.Lock()


@contextlib.contextmanager
def _first_writer(registry: str, digest: str, repository: str, origin: str) -> Iterator[str | None]:
    """Copies running side by side (sections of `dmi sync`, images sharing a base) that need one blob at one
    registry: the first writes it, the others wait and then mount it from there (or find it), instead of
    reading it from the source again. Yields the repository another copy from the same source (`origin`)
    wrote it to, or None: another source's bytes are not this one's to mount."""
    key = (registry, digest, origin)
    with _WRITING_LOCK:
        found = _WRITING.get(key)
        if found is None:
            done = threading.Event()
            _WRITING[key] = (done, repository)
    if found is not None:
        if not found[0].wait(WAIT_LIMIT):  # that copy is stuck: copy this one rather than wait on
            log.warning("blob %s: another copy has been writing it for %.0fs: copying it too", digest[:19], WAIT_LIMIT)
            yield None
            return
        yield found[1] if found[1] != repository else None
        return
    try:
        yield None
    finally:
        with _WRITING_LOCK:
            _WRITING.pop(key, None)
        done.set()


@contextlib.contextmanager
def _slots(*clients: RegistryClient) -> Iterator[None]:
    """Hold a transfer slot on each distinct host, taken in a fixed order so copies cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for client in sorted({id(c): c for c in clients}.values(), key=lambda c: c.registry):
            stack.enter_context(client.transfers)
        yield
