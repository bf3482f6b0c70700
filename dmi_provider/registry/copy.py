"""Copy images between registries without a Docker daemon: digest-exact and thrifty.

One image, src -> dst:
1. HEAD source and target; equal digests -> nothing to do, and no manifest GET on the source.
2. GET the top manifest by digest (and each child an index lists, unless the target has it already).
3. Each blob once: HEAD at the target, else a cross-repository mount, else GET source streamed into
   one PUT at the target with sha256 and size checked on the way (memory stays flat).
4. Child manifests by digest, then the top manifest by tag, only once everything they reference exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

from dmi_provider.registry.auth import Credentials, CredentialSource, docker_config_credentials
from dmi_provider.registry.budget import PullBudget, PullsShort
from dmi_provider.registry.client import RegistryClient, RetryPolicy, Uploads, body_chunks
from dmi_provider.registry.errors import DigestMismatch, ManifestInvalid, PinMoved, RegistryError
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.manifest import (
    INDEX_TYPES,
    SOURCE_DIGEST,
    SOURCE_PLATFORMS,
    Descriptor,
    Manifest,
    filter_index,
    from_json,
    to_json,
)
from dmi_provider.registry.network import Network
from dmi_provider.registry.reference import Reference, parse_reference
from dmi_provider.registry.referrers import Attached, Finder, ReferrerFilter, add_to_fallback

log = logging.getLogger(__name__)
PROGRESS_EVERY = 5.0  # seconds between progress lines of one large blob


@dataclass
class CopyResult:
    source: str
    target: str
    status: str  # copied | unchanged | dry-run
    source_digest: str
    target_digest: str | None
    media_type: str
    platforms: tuple[str, ...] = ()
    filtered: bool = False  # a platform filter wrote a new index: its digest differs from the source's
    changed: bool = True  # for dry-run: whether a real run would copy anything
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    manifests_copied: int = 0
    bytes_transferred: int = 0
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_source: str | None = None
    source_pulls: int = 0  # manifest GETs the source counted as pulls
    referrers_copied: int = 0  # signatures, attestations, SBOMs … written with the image
    warnings: list[str] = field(default_factory=list)  # what was skipped, never failing the image
    duration: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """What one copy must do, decided from HEADs (and manifest GETs when there is something to copy).
    Plain data: it crosses process boundaries (Airflow XCom) through to_dict / from_dict."""

    source: str
    target: str
    source_digest: str
    target_digest: str | None  # what the target holds now
    media_type: str
    changed: bool = True
    filtered: bool = False
    platforms: tuple[str, ...] = ()
    manifests: list[Manifest] = field(default_factory=list)  # children to write, then the top manifest
    blobs: list[Descriptor] = field(default_factory=list)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_source: str | None = None
    source_pulls: int = 0
    image_changed: bool = True  # False: only referrers to copy (`changed` says whether anything is)
    attached: list[Attached] = field(default_factory=list)  # referrers the target lacks
    referrers_found: int = 0
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0

    def result(self, dry_run: bool = False) -> CopyResult:
        status = "dry-run" if dry_run else ("copied" if self.changed and self.image_changed else "unchanged")
        return CopyResult(
            self.source, self.target, status, self.source_digest,
            self.target_digest if not self.changed or dry_run else None, self.media_type,
            platforms=self.platforms, filtered=self.filtered, changed=self.changed,
            requests={k: dict(v) for k, v in self.requests.items()}, ratelimit_limit=self.ratelimit_limit,
            ratelimit_remaining=self.ratelimit_remaining, ratelimit_source=self.ratelimit_source,
            source_pulls=self.source_pulls, warnings=list(self.warnings), duration=round(self.duration, 3),
        )

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["attached"] = [a.to_dict() for a in self.attached]
        data["manifests"] = [to_json(m) for m in self.manifests]
        data["blobs"] = [asdict(b) for b in self.blobs]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        data = dict(data)
        manifests = [from_json(m) for m in data.pop("manifests", [])]
        blobs = [Descriptor(**{**b, "urls": tuple(b.get("urls") or ()),
                               "annotations": tuple(tuple(a) for a in b.get("annotations") or ())})
                 for b in data.pop("blobs", [])]
        attached = [Attached.from_dict(a) for a in data.pop("attached", [])]
        return cls(**{**data, "platforms": tuple(data.get("platforms") or ())}, manifests=manifests, blobs=blobs,
                   attached=attached)


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


class ClientPool:
    """One client per registry host, with its credentials and whether plain HTTP is allowed."""

    def __init__(self, credentials: dict[str, Credentials | CredentialSource] | None = None,
                 insecure: Iterable[str] = (),
                 retry: RetryPolicy | None = None, use_docker_config: bool = True,
                 networks: dict[str, Network] | None = None, uploads: dict[str, Uploads] | None = None):
        self.credentials = dict(credentials or {})
        self.insecure = set(insecure)
        self.networks = dict(networks or {})  # a proxy or CA of a host
        self.uploads = dict(uploads or {})  # how a host takes blobs (chunked, mounts)
        self.retry = retry
        self.use_docker_config = use_docker_config
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, registry: str) -> RegistryClient:
        with self._lock:
            if registry not in self._clients:
                creds = self.credentials.get(registry)
                if creds is None and self.use_docker_config:
                    creds = docker_config_credentials(registry)
                self._clients[registry] = RegistryClient(registry, credentials=creds, retry=self.retry,
                                                         insecure=registry in self.insecure,
                                                         network=self.networks.get(registry),
                                                         uploads=self.uploads.get(registry))
            return self._clients[registry]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class Copier:
    """Copies images; shares what it learnt (which blobs sit where) across the images it copies."""

    def __init__(self, pool: ClientPool, workers: int = 4, progress: Callable[[str], None] | None = None,
                 locations: BlobLocations | None = None, budget: PullBudget | None = None,
                 known: dict[str, tuple[str, bytes]] | None = None, referrers: ReferrerFilter | None = None):
        self.pool = pool
        self.workers = workers
        self.say = progress or log.info
        self.locations = locations or BlobLocations()  # which repos hold which blobs: mount hints
        self.budget = budget  # a source's pull limit, spent only as far as it goes
        # Manifests paid for before (an earlier try of this task deferred): digest -> (media type, raw).
        self.known: dict[str, tuple[str, bytes]] = dict(known or {})
        # What travels with an image (signatures, SBOMs …): off unless asked (the CLI and the DAGs ask).
        self.referrers = referrers if referrers is not None else ReferrerFilter(enabled=False)

    def close(self) -> None:
        self.pool.close()
        self.locations.close()

    # -- one image ---------------------------------------------------------------------------------
    def copy(self, src: Reference, dst: Reference, *, platforms: tuple[str, ...] = (), force: bool = False,
             dry_run: bool = False) -> CopyResult:
        plan = self.plan(src, dst, platforms=platforms, force=force, fetch=not dry_run)
        if not plan.changed or dry_run:
            return plan.result(dry_run=dry_run)
        return self.execute(plan)

    def plan(self, src: Reference, dst: Reference, *, platforms: tuple[str, ...] = (), force: bool = False,
             fetch: bool = True) -> Plan:
        """HEAD source and target; when they differ (or `force`) and `fetch`, GET and verify the manifests
        that must be written. Writes nothing."""
        started = time.monotonic()
        sc, dc = self.pool.get(src.registry), self.pool.get(dst.registry)
        before, pulls = (Counter(sc.counts), Counter(dc.counts)), sc.pulls
        if src.tag and src.digest:
            self._check_pin(sc, src)
        src_head = sc.head_manifest(src.repository, src.ref)
        top: Manifest | None = None
        if src_head is None:
            if self.budget is not None:
                self.budget.check(sc.registry, sc.ratelimit, 1)
            top = sc.get_manifest(src.repository, src.ref)  # raises NotFound with the registry's message
            src_head = Descriptor(top.media_type, top.digest, len(top.raw))
        dst_head = dc.head_manifest(dst.repository, dst.ref)
        filtering = bool(platforms) and src_head.media_type in INDEX_TYPES
        plan = Plan(str(src), str(dst), src_head.digest, dst_head.digest if dst_head else None, src_head.media_type,
                    filtered=filtering)
        subjects: list[str] = []
        if not force and dst_head is not None and self._up_to_date(dc, dst, dst_head, src_head.digest, platforms,
                                                                   filtering):
            plan.changed = plan.image_changed = False
            self.say(f"{src} -> {dst}: unchanged ({src_head.digest})")
            subjects = self._subjects_at_target(dc, dst, dst_head, src_head.digest, filtering)
        elif not fetch:
            self.say(f"{src} -> {dst}: would copy {src_head.digest} (dry run: nothing written)")
        else:
            top = top or self._fetch(sc, src, [src_head.digest])[0]
            images, children, to_put = self._collect(sc, dc, src, dst, top, platforms, plan)
            plan.manifests = [*children, to_put]
            plan.blobs = self._unique_blobs(images)
            subjects = ([] if filtering else [top.digest]) + [c.digest for c in (to_put.children or ())
                                                               if c.platform != "unknown/unknown"]
        if not fetch and src_head.media_type not in INDEX_TYPES:
            subjects = subjects or [src_head.digest]  # a dry run knows a single image's digest from its HEAD
        if self.referrers.enabled and subjects:
            if filtering:
                plan.warnings.append("platform filter: the referrers of the kept platforms travel; those of the "
                                     "source's index stay behind (they are about that index, not the filtered one)")
            self._find_referrers(sc, dc, src, dst, subjects, plan, fetch)
        plan.requests = _requests(sc, dc, before)
        plan.source_pulls = sc.pulls - pulls
        if sc.ratelimit is not None:
            plan.ratelimit_limit, plan.ratelimit_remaining = sc.ratelimit.limit, sc.ratelimit.remaining
            plan.ratelimit_source = sc.ratelimit.source
        plan.duration = time.monotonic() - started
        return plan

    def _subjects_at_target(self, dc: RegistryClient, dst: Reference, dst_head: Descriptor, source_digest: str,
                            filtering: bool) -> list[str]:
        """The digests whose referrers travel, for an image the target holds already: the top one (unless
        a platform filter made a new index) and its platforms' (read at the target: no pull)."""
        subjects = [] if filtering else [source_digest]
        if dst_head.media_type in INDEX_TYPES and self.referrers.enabled:
            held = dc.get_manifest(dst.repository, dst_head.digest)
            subjects += [c.digest for c in held.children if c.platform != "unknown/unknown"]
        return subjects

    def _find_referrers(self, sc: RegistryClient, dc: RegistryClient, src: Reference, dst: Reference,
                        subjects: list[str], plan: Plan, fetch: bool) -> None:
        finder = Finder(sc, dc, src.repository, dst.repository,
                        (lambda digests: self._fetch(sc, src, digests)) if fetch else None,
                        self.referrers, plan.warnings.append)
        plan.attached = finder.attached(subjects)
        plan.referrers_found = finder.found
        for warning in plan.warnings:
            self.say(f"{src}: warning: {warning}")
        if plan.attached:
            plan.changed = True
            self.say(f"{src} -> {dst}: {len(plan.attached)} referrer manifest(s) to copy: "
                     + ", ".join(sorted({a.what for a in plan.attached})))

    def _fetch(self, sc: RegistryClient, src: Reference, digests: list[str]) -> list[Manifest]:
        """GET manifests by digest, all of them paid for at once from the pull budget (a deferred try
        pays for none twice: what it fetched comes back in `known`)."""
        needed = sum(1 for d in digests if d not in self.known)
        if self.budget is not None:
            try:
                self.budget.check(sc.registry, sc.ratelimit, needed)
            except PullsShort as short:
                short.fetched = dict(self.known)
                raise
        found = []
        for digest in digests:
            if digest in self.known:
                media_type, raw = self.known[digest]
                manifest = Manifest.parse(raw, media_type)
                if manifest.digest != digest:
                    raise DigestMismatch(f"{src}: a manifest kept from an earlier try hashes to {manifest.digest}, "
                                         f"not {digest}")
            else:
                try:
                    manifest = sc.get_manifest(src.repository, digest)
                except RegistryError as exc:  # a 429: what was paid for goes along with the deferred task
                    exc.fetched = dict(self.known)  # type: ignore[attr-defined]
                    raise
                self.known[digest] = (manifest.media_type, manifest.raw)
            found.append(manifest)
        return found

    def execute(self, plan: Plan) -> CopyResult:
        """Blobs, then child manifests by digest, then the top manifest by tag."""
        started = time.monotonic()
        src, dst = parse_reference(plan.source), parse_reference(plan.target)
        sc, dc = self.pool.get(src.registry), self.pool.get(dst.registry)
        before = (Counter(sc.counts), Counter(dc.counts))
        result = plan.result()
        if plan.image_changed:
            self.say(f"{src} -> {dst}: copying {plan.source_digest} ({plan.media_type}): {len(plan.blobs)} blobs, "
                     f"{_mib(sum(b.size for b in plan.blobs))}")
            # A tag that is not there yet, in a repository without tags: skip the blob HEADs (one GET for all).
            fresh = plan.target_digest is None and len(plan.blobs) > 1 and dc.repository_empty(dst.repository)
            self._copy_blobs(sc, dc, src.repository, dst.repository, plan.blobs, result, fresh)
            self._put_manifests(dc, dst, plan, result)
            self.say(
                f"{src} -> {dst}: copied {result.target_digest}: {result.blobs_copied} blobs copied "
                f"({_mib(result.bytes_transferred)}), {result.blobs_mounted} mounted, {result.blobs_skipped} skipped"
            )
        else:
            result.target_digest = plan.target_digest
        for attached in plan.attached:
            self._copy_attached(sc, dc, src, dst, attached, result)
        spent = _requests(sc, dc, before)
        for side, counts in spent.items():
            merged = Counter(result.requests.get(side, {})) + Counter(counts)
            result.requests[side] = dict(sorted(merged.items()))
        if sc.ratelimit is not None:
            result.ratelimit_limit, result.ratelimit_remaining = sc.ratelimit.limit, sc.ratelimit.remaining
            result.ratelimit_source = sc.ratelimit.source
        result.duration = round(plan.duration + time.monotonic() - started, 3)
        return result

    def _copy_attached(self, sc: RegistryClient, dc: RegistryClient, src: Reference, dst: Reference,
                       attached: Attached, result: CopyResult) -> None:
        """One referrer after the image: its blobs, then its manifests. A failure is a warning: the image
        is mirrored already, and the next run finds the referrer still missing and tries again."""
        try:
            self._copy_blobs(sc, dc, src.repository, dst.repository, attached.blobs, result)
            *children, last = attached.manifests
            for child in children:
                dc.put_manifest(dst.repository, child.digest, child)
            _, indexed = dc.put_manifest_answer(dst.repository, attached.tag or last.digest, last)
            if attached.tag is None and not indexed and not attached.indexed:
                add_to_fallback(dc, dst.repository, attached.subject, last)
            result.referrers_copied += 0 if attached.bookkeeping else 1
            self.say(f"{dst}: copied {attached.what} {last.digest} of {attached.subject}")
        except RegistryError as exc:
            result.warnings.append(f"{attached.what} of {attached.subject} not copied: {exc}")
            self.say(f"{dst}: warning: {attached.what} of {attached.subject} not copied (the next run tries again): "
                     f"{exc}")

    @staticmethod
    def _check_pin(sc: RegistryClient, src: Reference) -> None:
        """A pinned tag (`tag@digest`) is mirrored only while the source tag still holds that digest."""
        held = sc.head_manifest(src.repository, src.tag or "")
        digest = held.digest if held else None
        if digest != src.digest:
            raise PinMoved(f"{src.name}:{src.tag} holds {digest or 'nothing'} at the source, not the pinned "
                           f"{src.digest}: not mirrored (update the pin in config.ini once the new digest is "
                           "trusted)")

    @staticmethod
    def _put_manifests(dc: RegistryClient, dst: Reference, plan: Plan, result: CopyResult) -> None:
        *children, top = plan.manifests
        for child in children:
            dc.put_manifest(dst.repository, child.digest, child)
            result.manifests_copied += 1
        result.target_digest = dc.put_manifest(dst.repository, dst.tag or top.digest, top)
        result.manifests_copied += 1

    def target_digest(self, target: str) -> str | None:
        """What the target reference holds now (one HEAD), or None."""
        dst = parse_reference(target)
        head = self.pool.get(dst.registry).head_manifest(dst.repository, dst.ref)
        return head.digest if head else None

    def _up_to_date(self, dc: RegistryClient, dst: Reference, dst_head: Descriptor, src_digest: str,
                    platforms: tuple[str, ...], filtering: bool) -> bool:
        if not filtering:
            return dst_head.digest == src_digest
        if dst_head.media_type not in INDEX_TYPES:
            return False
        # A filtered index remembers which source index and platforms it was made from.
        current = dc.get_manifest(dst.repository, dst_head.digest)
        return current.annotation(SOURCE_DIGEST) == src_digest and current.annotation(SOURCE_PLATFORMS) == ",".join(
            platforms)

    def _collect(self, sc: RegistryClient, dc: RegistryClient, src: Reference, dst: Reference, top: Manifest,
                 platforms: tuple[str, ...], plan: Plan) -> tuple[list[Manifest], list[Manifest], Manifest]:
        if not top.is_index:
            return [top], [], top
        to_put, children = top, top.children
        if platforms:
            to_put, children = filter_index(top, platforms)
            if not children:
                raise RegistryError(f"{src}: none of the platforms {', '.join(platforms)} is in the index "
                                    f"(it has {', '.join(top.platforms()) or 'no platform entries'})")
        plan.platforms = tuple(c.platform for c in children if c.platform and c.platform != "unknown/unknown")
        wanted = []
        for child in children:
            if child.media_type in INDEX_TYPES:
                raise ManifestInvalid(f"{src}: nested index {child.digest} is not supported")
            if dc.head_manifest(dst.repository, child.digest) is None:  # else it and its blobs are there already
                wanted.append(child)
        missing = self._fetch(sc, src, [c.digest for c in wanted])
        for child, manifest in zip(wanted, missing, strict=True):
            _check_child(src, child, manifest)
        return missing, missing, to_put

    @staticmethod
    def _unique_blobs(images: list[Manifest]) -> list[Descriptor]:
        seen: dict[str, Descriptor] = {}
        for image in images:
            for blob in image.blobs:
                seen.setdefault(blob.digest, blob)
        return list(seen.values())

    def _copy_blobs(self, sc: RegistryClient, dc: RegistryClient, src_repo: str, dst_repo: str,
                    blobs: list[Descriptor], result: CopyResult, fresh: bool = False) -> None:
        counts: Counter[str] = Counter()
        nbytes = 0
        lock = threading.Lock()

        def one(blob: Descriptor) -> None:
            nonlocal nbytes
            outcome, moved = self._copy_blob(sc, dc, src_repo, dst_repo, blob, fresh)
            with lock:
                counts[outcome] += 1
                nbytes += moved

        with ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="dmi-blob") as pool:
            # Larger blobs first, so the long transfers overlap with the rest.
            futures = [pool.submit(one, b) for b in sorted(blobs, key=lambda b: -b.size)]
            errors = [f.exception() for f in futures if f.exception() is not None]
        result.blobs_copied += counts["copied"]
        result.blobs_mounted += counts["mounted"]
        result.blobs_skipped += counts["skipped"]
        result.bytes_transferred += nbytes
        if errors:
            raise errors[0]  # type: ignore[misc]

    # -- one blob ----------------------------------------------------------------------------------
    def _copy_blob(self, sc: RegistryClient, dc: RegistryClient, src_repo: str, dst_repo: str,
                   blob: Descriptor, fresh: bool = False) -> tuple[str, int]:
        if blob.foreign:
            self.say(f"  blob {blob.digest[:19]} skipped: non-distributable layer ({_mib(blob.size)})")
            return "skipped", 0
        with _first_writer(dc.registry, blob.digest, dst_repo) as other:
            return self._copy_blob_once(sc, dc, src_repo, dst_repo, blob, other, fresh)

    def _copy_blob_once(self, sc: RegistryClient, dc: RegistryClient, src_repo: str, dst_repo: str,
                        blob: Descriptor, other: str | None, fresh: bool) -> tuple[str, int]:
        short = blob.digest[:19]
        holders = self.locations.holders(dc.registry, blob.digest) | ({other} if other else set())
        # In a repository without tags a blob is there only if an earlier, failed copy left it (the hints say).
        if (not fresh or dst_repo in holders) and dc.blob_exists(dst_repo, blob.digest):
            self.locations.add(dc.registry, blob.digest, dst_repo)
            self.say(f"  blob {short} skipped: already at the target ({_mib(blob.size)})")
            return "skipped", 0
        sources = ([src_repo] if sc.registry == dc.registry else []) + sorted(holders - {dst_repo})
        mounted, opened = self._mount(dc, dst_repo, blob, sources, "")
        if mounted:
            return "mounted", 0
        with self.locations.writing(dc.registry, blob.digest, dst_repo) as waited:
            if waited:  # another worker wrote it while this one waited: find it or mount it from there
                now = self.locations.holders(dc.registry, blob.digest)
                if dst_repo in now and dc.blob_exists(dst_repo, blob.digest):
                    if opened:
                        dc.cancel_upload(dst_repo, opened)
                    self.say(f"  blob {short} skipped: written by another worker meanwhile ({_mib(blob.size)})")
                    return "skipped", 0
                later = sorted(now - {dst_repo, *sources})
                mounted, opened = self._mount(dc, dst_repo, blob, later, opened)
                if mounted:
                    return "mounted", 0
            return self._copy_with_retries(sc, dc, src_repo, dst_repo, blob, short, opened)

    def _mount(self, dc: RegistryClient, dst_repo: str, blob: Descriptor, sources: list[str],
               opened: str) -> tuple[bool, str]:
        """Mount from the first repository of `sources` that holds the blob. Returns (mounted, the upload a
        refused mount opened: the copy uses it)."""
        for from_repo in sources:
            location = dc.mount_blob(dst_repo, blob.digest, from_repo)
            if location is None:
                if opened:
                    dc.cancel_upload(dst_repo, opened)
                self.locations.add(dc.registry, blob.digest, dst_repo)
                self.say(f"  blob {blob.digest[:19]} mounted from {from_repo} ({_mib(blob.size)})")
                return True, ""
            if location and opened:
                dc.cancel_upload(dst_repo, location)
            opened = opened or location
            self.locations.forget(dc.registry, blob.digest, from_repo)  # a stale hint
        return False, opened

    def _copy_with_retries(self, sc: RegistryClient, dc: RegistryClient, src_repo: str, dst_repo: str,
                           blob: Descriptor, short: str, opened: str) -> tuple[str, int]:
        # The only retry level of a blob copy: the GET and the upload inside are sent once per attempt.
        policy, started = sc.retry, time.monotonic()
        for attempt in range(policy.attempts):
            try:
                return self._stream_blob(sc, dc, src_repo, dst_repo, blob, short, opened)
            except RegistryError as exc:
                opened = ""  # used (and cancelled on failure) by that try
                delay = policy.delay(attempt, exc.retry_after)
                # A same-size digest mismatch may be a bad transfer: one more try, then it is the source's fault.
                again = exc.retryable or (isinstance(exc, DigestMismatch) and exc.size_ok and attempt == 0)
                if not again or attempt + 1 >= policy.attempts or time.monotonic() - started + delay > policy.total:
                    raise
                self.say(f"  blob {short} failed ({exc}); checking the target and retrying from zero in {delay:.1f}s")
                time.sleep(delay)
                if dc.blob_exists(dst_repo, blob.digest):
                    self.locations.add(dc.registry, blob.digest, dst_repo)
                    return "copied", blob.size
        raise AssertionError("unreachable")

    def _stream_blob(self, sc: RegistryClient, dc: RegistryClient, src_repo: str, dst_repo: str, blob: Descriptor,
                     short: str, location: str = "") -> tuple[str, int]:
        with _slots(sc, dc), self.locations.uploading(dc.registry), \
                sc.open_blob(src_repo, blob.digest, retry=False) as response:
            started = time.monotonic()
            chunks = self._verified(body_chunks(response), blob, short, started)
            dc.upload_blob(dst_repo, blob.digest, blob.size, chunks, retry=False, location=location or None)
        elapsed = max(time.monotonic() - started, 1e-6)
        self.locations.add(dc.registry, blob.digest, dst_repo)
        self.say(f"  blob {short} copied {_mib(blob.size)} in {elapsed:.2f}s ({_mib(blob.size / elapsed)}/s)")
        return "copied", blob.size

    def _verified(self, chunks: Iterable[bytes], blob: Descriptor, short: str, started: float) -> Iterator[bytes]:
        """Pass chunks on while hashing; the last chunk is held back until size and digest check out,
        so a corrupted blob never completes its upload."""
        algorithm, _, expected = blob.digest.partition(":")
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
                raise DigestMismatch(f"blob {blob.digest}: more than the {blob.size} bytes its descriptor says")
            if pending:
                yield pending
            pending = chunk
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                rate = seen / max(now - started, 1e-6)
                self.say(f"  blob {short} {_mib(seen)} of {_mib(blob.size)} ({100 * seen // max(blob.size, 1)}%) "
                         f"at {_mib(rate)}/s")
        if seen != blob.size or hasher.hexdigest() != expected:
            raise DigestMismatch(f"blob {blob.digest}: received {seen} bytes hashing to {algorithm}:"
                                 f"{hasher.hexdigest()}, expected {blob.size} bytes", size_ok=seen == blob.size)
        if pending:
            yield pending

def _check_child(src: Reference, child: Descriptor, manifest: Manifest) -> None:
    """The child must be what its index says: an image manifest of the announced type and size."""
    if manifest.is_index:
        raise ManifestInvalid(f"{src}: child {child.digest} is an index (nested indexes are not supported)")
    if child.media_type and manifest.media_type != child.media_type:
        raise ManifestInvalid(f"{src}: child {child.digest} is {manifest.media_type}, its index says "
                              f"{child.media_type}")
    if len(manifest.raw) != child.size:
        raise ManifestInvalid(f"{src}: child {child.digest} has {len(manifest.raw)} bytes, its index says "
                              f"{child.size}")


def _requests(sc: RegistryClient, dc: RegistryClient, before: tuple[Counter, Counter]) -> dict[str, dict[str, int]]:
    source = sc.counts - before[0]
    target = dc.counts - before[1] if dc is not sc else Counter()
    return {"source": dict(sorted(source.items())), "target": dict(sorted(target.items()))}


# Blobs being written right now, per target registry: (registry, digest) -> (done, repository written to).
_WRITING: dict[tuple[str, str], tuple[threading.Event, str]] = {}
_WRITING_LOCK = threading.Lock()


@contextlib.contextmanager
def _first_writer(registry: str, digest: str, repository: str) -> Iterator[str | None]:
    """Copies running side by side (sections of `dmi sync`, images sharing a base) that need one blob at one
    registry: the first writes it, the others wait and then mount it from there (or find it), instead of
    reading it from the source again. Yields the repository another copy wrote it to, or None."""
    key = (registry, digest)
    with _WRITING_LOCK:
        found = _WRITING.get(key)
        if found is None:
            done = threading.Event()
            _WRITING[key] = (done, repository)
    if found is not None:
        found[0].wait()
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
