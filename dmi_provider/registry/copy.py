"""Copy images between registries without a Docker daemon: digest-exact and thrifty.

One image, src -> dst (an `ImageCopy`, holding both clients and repositories): 1. HEAD source and target;
equal digests: nothing to do, no manifest GET. 2. GET the top manifest by digest (and each child the target
lacks). 3. Each blob once (blobs.py): found, mounted, or streamed from the source into one PUT, checked on
the way. 4. Child manifests by digest, then the top manifest by tag (with verify: once it verified, gate.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dmi_provider.registry.blobs import STALL_TIMEOUT, BlobCopy, Moved, mib, outlast
from dmi_provider.registry.budget import PullBudget, PullsShort
from dmi_provider.registry.client import RegistryClient
from dmi_provider.registry.errors import DigestMismatch, ManifestInvalid, PinMoved, RegistryError, sides
from dmi_provider.registry.gate import Gate, RejectedImage, judge, quarantine_parts, subjects, withdraw
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.manifest import (
    INDEX_TYPES,
    SOURCE_DIGEST,
    SOURCE_PLATFORMS,
    Descriptor,
    Manifest,
    check_child,
    filter_index,
    unique_blobs,
)
from dmi_provider.registry.plan import CopyResult, Plan
from dmi_provider.registry.pool import ClientPool
from dmi_provider.registry.reference import Reference, parse_reference
from dmi_provider.registry.referrers import Attached, Finder, ReferrerFilter, TagListings, add_to_fallback

# Names other modules import from here.
__all__ = ["ClientPool", "Copier", "CopyResult", "ImageCopy", "Plan"]

log = logging.getLogger(__name__)


@dataclass(eq=False)  # an object with a job, compared by identity
class Copier:
    """Copies images; shares what it learnt (which blobs sit where) across the images it copies.
    `budget`: a source's pull limit, spent only as far as it goes; `known`: manifests paid for before (an
    earlier try of this task deferred), digest -> (media type, raw); `referrers`: what travels with an image
    (signatures, SBOMs …), off unless asked (the CLI and the DAGs ask)."""

    pool: ClientPool
    workers: int = 4
    progress: Callable[[str], None] | None = None
    locations: BlobLocations = field(default_factory=BlobLocations)  # which repos hold which blobs: mount hints
    budget: PullBudget | None = None
    known: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    referrers: ReferrerFilter = field(default_factory=lambda: ReferrerFilter(enabled=False))
    tag_lists: TagListings = field(default_factory=TagListings)  # source listings
    stall: float = STALL_TIMEOUT  # stall-timeout: a blob transfer without progress this long is retried
    gate: Gate | None = None  # verify: the target tag only for an image whose signatures verify (gate.py)

    def __post_init__(self) -> None:
        self.say = self.progress or log.info
        self.known = dict(self.known or {})  # its own: what this copier pays for is added

    def close(self) -> None:
        self.pool.close()
        self.locations.close()

    def image(self, src: Reference, dst: Reference) -> ImageCopy:
        return ImageCopy(self, src, dst, self.pool.get(src.registry), self.pool.get(dst.registry))

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
        with sides(src.registry, dst.registry):
            return self.image(src, dst).plan(platforms, force, fetch)

    def execute(self, plan: Plan) -> CopyResult:
        """Blobs, then child manifests by digest, then the top manifest by tag."""
        src, dst = parse_reference(plan.source), parse_reference(plan.target)
        with sides(src.registry, dst.registry):
            return self.image(src, dst).execute(plan)

    def target_digest(self, target: str) -> str | None:
        """What the target reference holds now (one HEAD), or None."""
        dst = parse_reference(target)
        with sides(None, dst.registry):
            head = self.pool.get(dst.registry).head_manifest(dst.repository, dst.ref)
        return head.digest if head else None


@dataclass(eq=False)  # an object with a job, compared by identity
class ImageCopy:
    """One image from `src` to `dst`: the planner (HEADs, manifests, referrers) and the writer."""

    copier: Copier
    src: Reference
    dst: Reference
    sc: RegistryClient
    dc: RegistryClient
    held: bool = False  # verify: the target held the top manifest before this copy (a rejection leaves it)

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, platforms: tuple[str, ...], force: bool, fetch: bool) -> Plan:
        started = time.monotonic()
        src, dst, sc, dc, say = self.src, self.dst, self.sc, self.dc, self.copier.say
        before, pulls = (sc.transport.snapshot(), dc.transport.snapshot()), sc.pulls
        if src.tag and src.digest:
            self._check_pin()
        src_head = sc.head_manifest(src.repository, src.ref)
        top: Manifest | None = None
        if src_head is None:
            if self.copier.budget is not None:
                self.copier.budget.check(sc.registry, sc.ratelimit, 1)
            top = sc.get_manifest(src.repository, src.ref)  # raises NotFound with the registry's message
            src_head = Descriptor(top.media_type, top.digest, len(top.raw))
        dst_head = dc.head_manifest(dst.repository, dst.ref)
        filtering = bool(platforms) and src_head.media_type in INDEX_TYPES
        image_changed, manifests, blobs = True, [], []
        kept: tuple[str, ...] = ()
        subjects: list[str] = []
        if not force and dst_head is not None and self._up_to_date(dst_head, src_head.digest, platforms, filtering):
            image_changed = False
            say(f"{src} -> {dst}: unchanged ({src_head.digest})")
            subjects = self._subjects_at_target(dst_head, src_head.digest, filtering)
        elif not fetch:
            say(f"{src} -> {dst}: to copy {src_head.digest} (planned from HEADs: nothing fetched or written yet)")
        else:
            top = top or self._fetch([src_head.digest])[0]
            images, children, to_put, kept = self._collect(top, platforms)
            manifests = [*children, to_put]
            blobs = unique_blobs(images)
            subjects = ([] if filtering else [top.digest]) + [c.digest for c in (to_put.children or ())
                                                               if c.platform != "unknown/unknown"]
        if not fetch and src_head.media_type not in INDEX_TYPES:
            subjects = subjects or [src_head.digest]  # a dry run knows a single image's digest from its HEAD
        attached: list[Attached] = []
        found, warnings = 0, list[str]()
        if self.copier.referrers.enabled and subjects:
            if filtering:
                warnings.append("platform filter: the referrers of the kept platforms travel; those of the "
                                "source's index stay behind (they are about that index, not the filtered one)")
            attached, found = self._find_referrers(subjects, fetch, warnings)
        limit = sc.ratelimit
        return Plan(str(src), str(dst), src_head.digest, dst_head.digest if dst_head else None, src_head.media_type,
                    changed=image_changed or bool(attached), filtered=filtering, platforms=kept,
                    manifests=manifests, blobs=blobs, requests=_requests(sc, dc, before),
                    ratelimit_limit=limit.limit if limit else None,
                    ratelimit_remaining=limit.remaining if limit else None,
                    ratelimit_source=limit.source if limit else None, source_pulls=sc.pulls - pulls,
                    image_changed=image_changed, attached=attached, referrers_found=found, warnings=warnings,
                    duration=time.monotonic() - started)

    def _check_pin(self) -> None:
        """A pinned tag (`tag@digest`) is mirrored only while the source tag still holds that digest."""
        src = self.src
        held = self.sc.head_manifest(src.repository, src.tag or "")
        digest = held.digest if held else None
        if digest != src.digest:
            error = PinMoved(f"{src.name}:{src.tag} holds {digest or 'nothing'} at the source, not the pinned "
                             f"{src.digest}: not mirrored")
            error.side = "source"
            raise error

    def _up_to_date(self, dst_head: Descriptor, src_digest: str, platforms: tuple[str, ...], filtering: bool) -> bool:
        if not filtering:
            return dst_head.digest == src_digest
        if dst_head.media_type not in INDEX_TYPES:
            return False
        # A filtered index remembers which source index and platforms it was made from.
        current = self.dc.get_manifest(self.dst.repository, dst_head.digest)
        return current.annotation(SOURCE_DIGEST) == src_digest and current.annotation(SOURCE_PLATFORMS) == ",".join(
            platforms)

    def _subjects_at_target(self, dst_head: Descriptor, source_digest: str, filtering: bool) -> list[str]:
        """The digests whose referrers travel, for an image the target holds already: the top one (unless
        a platform filter made a new index) and its platforms' (read at the target: no pull)."""
        subjects = [] if filtering else [source_digest]
        if dst_head.media_type in INDEX_TYPES and self.copier.referrers.enabled:
            held = self.dc.get_manifest(self.dst.repository, dst_head.digest)
            subjects += [c.digest for c in held.children if c.platform != "unknown/unknown"]
        return subjects

    def _find_referrers(self, subjects: list[str], fetch: bool, warnings: list[str]) -> tuple[list[Attached], int]:
        """(referrers the target lacks, referrers found); what is skipped is added to `warnings` and said."""
        say = self.copier.say
        finder = Finder(self.sc, self.dc, self.src.repository, self.dst.repository, self._fetch if fetch else None,
                        self.copier.referrers, warnings.append, listings=self.copier.tag_lists)
        attached = finder.attached(subjects)
        for warning in warnings:
            say(f"{self.src}: warning: {warning}")
        if attached:
            say(f"{self.src} -> {self.dst}: {len(attached)} referrer manifest(s) to copy: "
                + ", ".join(sorted({a.what for a in attached})))
        return attached, finder.found

    def _fetch(self, digests: list[str]) -> list[Manifest]:
        """GET manifests by digest, all of them paid for at once from the pull budget (a deferred try
        pays for none twice: what it fetched comes back in `known`)."""
        known, sc, src = self.copier.known, self.sc, self.src
        needed = sum(1 for d in digests if d not in known)
        if self.copier.budget is not None:
            try:
                self.copier.budget.check(sc.registry, sc.ratelimit, needed)
            except PullsShort as short:
                short.fetched = dict(known)
                raise
        found = []
        for digest in digests:
            if digest in known:
                media_type, raw = known[digest]
                manifest = Manifest.parse(raw, media_type)
                if manifest.digest != digest:
                    raise DigestMismatch(f"{src}: a manifest kept from an earlier try hashes to {manifest.digest}, "
                                         f"not {digest}")
            else:
                try:
                    manifest = sc.get_manifest(src.repository, digest)
                except RegistryError as exc:  # a 429: what was paid for goes along with the deferred task
                    exc.fetched = dict(known)  # type: ignore[attr-defined]
                    raise
                known[digest] = (manifest.media_type, manifest.raw)
            found.append(manifest)
        return found

    def _collect(self, top: Manifest, platforms: tuple[str, ...]
                 ) -> tuple[list[Manifest], list[Manifest], Manifest, tuple[str, ...]]:
        """(images whose blobs travel, child manifests to write, the manifest to tag, the platforms kept)."""
        src = self.src
        if not top.is_index:
            return [top], [], top, ()
        to_put, children = top, top.children
        if platforms:
            to_put, children = filter_index(top, platforms)
            if not children:
                raise RegistryError(f"{src}: none of the platforms {', '.join(platforms)} is in the index "
                                    f"(it has {', '.join(top.platforms()) or 'no platform entries'})")
        kept = tuple(c.platform for c in children if c.platform and c.platform != "unknown/unknown")
        wanted = []
        for child in children:
            if child.media_type in INDEX_TYPES:
                raise ManifestInvalid(f"{src}: nested index {child.digest} is not supported")
            if self.dc.head_manifest(self.dst.repository, child.digest) is None:  # else it and its blobs are there
                wanted.append(child)
        missing = self._fetch([c.digest for c in wanted])
        for child, manifest in zip(wanted, missing, strict=True):
            check_child(str(src), child, manifest)
        return missing, missing, to_put, kept

    # -- writing -------------------------------------------------------------------------------------
    def execute(self, plan: Plan) -> CopyResult:
        started = time.monotonic()
        src, dst, sc, dc, say = self.src, self.dst, self.sc, self.dc, self.copier.say
        before = (sc.transport.snapshot(), dc.transport.snapshot())
        self._bring_back(plan)
        result = plan.result()
        gate = self.copier.gate
        gated = gate is not None and gate.active and plan.image_changed
        if plan.image_changed:
            say(f"{src} -> {dst}: copying {plan.source_digest} ({plan.media_type}): {len(plan.blobs)} blobs, "
                f"{mib(sum(b.size for b in plan.blobs))}")
            # A tag that is not there yet, in a repository without tags: skip the blob HEADs (one GET for all).
            fresh = plan.target_digest is None and len(plan.blobs) > 1 and dc.repository_empty(dst.repository)
            _add(result, self._blobs(fresh).run(plan.blobs))
            *children, top = plan.manifests
            for child in children:
                self._put(child.digest, child)
            if gated:  # by digest now, its tag only once its signatures (copied next) check out
                self.held = dc.head_manifest(dst.repository, top.digest) is not None
            result.target_digest = self._put(top.digest if gated else dst.tag or top.digest, top)
            result.manifests_copied += len(plan.manifests)
            say(f"{src} -> {dst}: {'wrote (untagged until verified)' if gated else 'copied'} {result.target_digest}: "
                f"{result.blobs_copied} blobs copied ({mib(result.bytes_transferred)}), {result.blobs_mounted} "
                f"mounted, {result.blobs_skipped} skipped")
        else:
            result.target_digest = plan.target_digest
        unindexed: dict[str, list[tuple[Attached, Manifest]]] = {}  # subject -> referrers for its fallback index
        for attached in plan.attached:
            last = self._copy_attached(attached, result)
            if last is not None:
                unindexed.setdefault(attached.subject, []).append((attached, last))
        for subject, written in unindexed.items():
            self._index_referrers(subject, written, result)
        if gate is not None and gated:
            self._publish(gate, plan, result)
        for side, counts in _requests(sc, dc, before).items():
            merged = Counter(result.requests.get(side, {})) + Counter(counts)
            result.requests[side] = dict(sorted(merged.items()))
        if sc.ratelimit is not None:
            result.ratelimit_limit, result.ratelimit_remaining = sc.ratelimit.limit, sc.ratelimit.remaining
            result.ratelimit_source = sc.ratelimit.source
        result.duration = round(plan.duration + time.monotonic() - started, 3)
        return result

    def _bring_back(self, plan: Plan) -> None:
        """Manifests the plan carried by digest only (over XCOM_MANIFEST_BYTES): read again from the source,
        verified against their digest, paid for as one claim on the pull budget."""
        lists = [plan.manifests, *(a.manifests for a in plan.attached)]
        wanted = list(dict.fromkeys(m.digest for manifests in lists for m in manifests if m.aside))
        if not wanted:
            return
        self.copier.say(f"{self.src}: reading {len(wanted)} manifest(s) again that the plan carried by digest only")
        found = {m.digest: m for m in self._fetch(wanted)}
        for manifests in lists:
            manifests[:] = [found[m.digest] if m.aside else m for m in manifests]

    def _put(self, ref: str, manifest: Manifest, repo: str | None = None) -> str:
        """One manifest written, waiting out a target that restarts meanwhile (the plan just reached it)."""
        return outlast(self.dc.retry, self.copier.say, f"manifest {manifest.digest[:19]}",
                       lambda: self.dc.put_manifest(repo or self.dst.repository, ref, manifest))

    def _publish(self, gate: Gate, plan: Plan, result: CopyResult) -> None:
        """The tag of a verified image; else the quarantine tag, or nothing, and RejectedImage."""
        dst, say, top = self.dst, self.copier.say, plan.manifests[-1]
        verdict = judge(self.dc, dst.repository, subjects(top, plan.filtered), gate.policy)
        if verdict.ok:
            result.target_digest = self._put(dst.tag or top.digest, top)
            result.verified_by = verdict.verified_by
            say(f"{dst}: verified (of {verdict.checked} signed item(s), accepted by {verdict.verified_by}): tagged")
            return
        missing = [w for w in result.warnings if " not copied: " in w]
        if missing:  # what would verify may be among them: a later try copies them and looks again
            raise RegistryError(f"{dst}: not verified ({verdict.reason}), and {len(missing)} referrer(s) were not "
                                f"copied: {missing[0]}", retryable=True)
        if gate.quarantine is None:
            withdraw(self.dc, dst.repository, plan.manifests[:-1] if self.held else plan.manifests, say)
            say(f"{dst}: rejected: {verdict.reason}; the target tag is left as it was")
            raise RejectedImage(f"{verdict.reason}: not published (the target tag is left as it was)")
        ref, (children, blobs) = dst.tag or top.digest, quarantine_parts(self.dc, dst.repository, top, plan.manifests)
        c = self.copier  # the blobs from the target repository: mounted, not read again
        BlobCopy(self.dc, self.dc, dst.repository, gate.quarantine, c.locations, say, c.workers).run(blobs).check()
        for manifest, at in [*((m, m.digest) for m in children), (top, ref)]:
            self._put(at, manifest, gate.quarantine)
        withdraw(self.dc, dst.repository, plan.manifests[:-1] if self.held else plan.manifests, say)
        where = f"{self.dc.registry}/{gate.quarantine}:{ref}"
        say(f"{dst}: quarantined at {where}: {verdict.reason}")
        raise RejectedImage(f"{verdict.reason}: quarantined at {where} (the target tag is left as it was)",
                            outcome="quarantined", quarantined_at=where)

    def _blobs(self, fresh: bool = False) -> BlobCopy:
        copier = self.copier
        return BlobCopy(self.sc, self.dc, self.src.repository, self.dst.repository, copier.locations,
                        copier.say, copier.workers, fresh, copier.stall)

    def _copy_attached(self, attached: Attached, result: CopyResult) -> Manifest | None:
        """One referrer after the image: its blobs, then its manifests. A failure is a warning: the image
        is mirrored already, and the next run finds the referrer still missing and tries again. Returns
        the manifest written when the target must list it in the subject's fallback index."""
        dc, dst, say = self.dc, self.dst, self.copier.say
        try:
            _add(result, self._blobs().run(attached.blobs))
            *children, last = attached.manifests
            for child in children:
                self._put(child.digest, child)
            _, indexed = outlast(self.dc.retry, self.copier.say, f"manifest {last.digest[:19]}",
                                 lambda: dc.put_manifest_answer(dst.repository, attached.tag or last.digest, last))
            result.referrers_copied += 0 if attached.bookkeeping else 1
            say(f"{dst}: copied {attached.what} {last.digest} of {attached.subject}")
            return last if attached.tag is None and not indexed and not attached.indexed else None
        except RegistryError as exc:
            self._not_copied(attached, exc, result)
            return None

    def _index_referrers(self, subject: str, written: list[tuple[Attached, Manifest]], result: CopyResult) -> None:
        """A target without the referrers API: the subject's fallback index, read and written once."""
        try:
            add_to_fallback(self.dc, self.dst.repository, subject, [m for _, m in written])
        except RegistryError as exc:
            for attached, _ in written:
                self._not_copied(attached, exc, result)

    def _not_copied(self, attached: Attached, exc: RegistryError, result: CopyResult) -> None:
        result.warnings.append(f"{attached.what} of {attached.subject} not copied: {exc}")
        self.copier.say(f"{self.dst}: warning: {attached.what} of {attached.subject} not copied (the next run "
                        f"tries again): {exc}")


def _add(result: CopyResult, moved: Moved) -> None:
    """Count what a blob copy did into the result, then raise its first failure (the counts stand)."""
    result.blobs_copied += moved.counts["copied"]
    result.blobs_mounted += moved.counts["mounted"]
    result.blobs_skipped += moved.counts["skipped"]
    result.bytes_transferred += moved.nbytes
    moved.check()


def _requests(sc: RegistryClient, dc: RegistryClient, before: tuple[Counter, Counter]) -> dict[str, dict[str, int]]:
    source = sc.transport.snapshot() - before[0]
    target = dc.transport.snapshot() - before[1] if dc is not sc else Counter()
    return {"source": dict(sorted(source.items())), "target": dict(sorted(target.items()))}
