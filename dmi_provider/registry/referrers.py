"""What travels with an image: OCI 1.1 referrers (signatures, SBOMs, attestations with a `subject`),
found through the referrers API or its fallback tag `sha256-<hex>`, and cosign's tags `sha256-<hex>.sig`,
`.att`, `.sbom`. Plain Python: no Airflow import here.

Found from HEADs and the referrers listing (neither is a pull); only what the target lacks is fetched.
Everything is copied byte for byte, so the signatures verify at the target with the same keys. A
referrer that cannot be used (its subject is another image, its manifest is gone) is skipped with a
warning: it never fails the image it refers to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dmi_provider.registry.client import RegistryClient
from dmi_provider.registry.errors import NotFound, RegistryError
from dmi_provider.registry.manifest import OCI_INDEX, SOURCE_DIGEST, Descriptor, Manifest, from_json, to_json

COSIGN_SUFFIXES = {".sig": "signature", ".att": "attestation", ".sbom": "sbom"}
# Artifact types by the kind a filter names; anything else is matched by its own type.
KINDS = {
    "signature": ("application/vnd.dev.cosign.simplesigning.v1+json", "application/vnd.dev.sigstore.bundle"),
    "attestation": ("application/vnd.dsse.envelope.v1+json", "application/vnd.in-toto"),
    "sbom": ("application/spdx", "text/spdx", "application/vnd.cyclonedx", "application/vnd.syft"),
}


DEFAULT_MAX, HARD_MAX = 50, 1000
CREATED = "org.opencontainers.image.created"


def kind_of(artifact_type: str | None) -> str | None:
    for kind, prefixes in KINDS.items():
        if artifact_type and artifact_type.startswith(prefixes):
            return kind
    return None


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: `<algorithm>-<hex>` (truncated to 32 and 64 characters)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


@dataclass(frozen=True)
class ReferrerFilter:
    """Which artifacts travel: `include` (empty: all) and `exclude`, each a kind (signature, attestation,
    sbom) or an artifact type."""

    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    most: int = DEFAULT_MAX  # per subject, newest first (`referrers-max`): a flood of referrers is not copied
    first: tuple[str, ...] = ()  # kinds kept before any other under `most` (what verify needs)

    def allows(self, artifact_type: str | None, kind: str | None = None) -> bool:
        kind = kind or kind_of(artifact_type)
        names = {n for n in (kind, artifact_type) if n}
        if self.include and not names & set(self.include):
            return False
        return not names & set(self.exclude)


@dataclass
class Attached:
    """One artifact to copy with an image: its manifests (children first, then the one written last, under
    `tag` or by digest) and the blobs they need."""

    subject: str
    what: str  # "referrer", "fallback index" or "cosign .sig" …, for messages
    tag: str | None
    manifests: list[Manifest] = field(default_factory=list)  # empty in a dry run: what would be copied
    blobs: list[Descriptor] = field(default_factory=list)
    indexed: bool = False  # listed in a fallback index that is copied too: no index to maintain for it

    @property
    def bookkeeping(self) -> bool:
        """A fallback index: it lists referrers, it is none itself (not counted as copied)."""
        return self.what.startswith("fallback index")

    def to_dict(self, fits: Callable[[Manifest], bool] = lambda _: True) -> dict:
        return {"subject": self.subject, "what": self.what, "tag": self.tag, "indexed": self.indexed,
                "manifests": [to_json(m, aside=not fits(m)) for m in self.manifests],
                "blobs": [{"media_type": b.media_type, "digest": b.digest, "size": b.size} for b in self.blobs]}

    @classmethod
    def from_dict(cls, data: dict) -> Attached:
        return cls(data["subject"], data["what"], data.get("tag"), [from_json(m) for m in data["manifests"]],
                   [Descriptor(b["media_type"], b["digest"], b["size"]) for b in data["blobs"]],
                   bool(data.get("indexed")))


class TagListings:
    """Source tag listings by (registry, repository), shared by the images of one run: each repository is
    listed once, however many threads ask at the same time."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], frozenset[str] | None] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, client: RegistryClient, repo: str) -> frozenset[str] | None:
        key = (client.registry, repo)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._held:
                self._held[key] = client.known_tags(repo)
            return self._held[key]


Fetch = Callable[[list[str]], list[Manifest]]  # GET manifests by digest from the source, paid from the budget
# (None: a dry run, which says what it would copy from HEADs and listings alone)


@dataclass
class Finder:
    """Finds what refers to the subjects of one image and what of it the target lacks."""

    sc: RegistryClient
    dc: RegistryClient
    src_repo: str
    dst_repo: str
    fetch: Fetch | None
    only: ReferrerFilter
    warn: Callable[[str], None]
    found: int = 0  # referrers seen at the source (for plans and messages)
    listed: frozenset[str] | None = None  # the source repository's tags, when one listing holds them
    listings: TagListings = field(default_factory=lambda: TagListings())

    def attached(self, subjects: list[str]) -> list[Attached]:
        out: list[Attached] = []
        # The source's tags, listed once per repository and run: a tag it does not have needs no HEAD.
        self.listed = self.listings.get(self.sc, self.src_repo) if subjects else None
        for subject in subjects:
            listed = self.sc.referrers(self.src_repo, subject)
            out += self._from_api(subject, listed) if listed is not None else self._from_fallback(subject)
            out += self._cosign(subject)
        return out

    def _from_api(self, subject: str, listed: list[Descriptor]) -> list[Attached]:
        wanted = self._newest(subject, [d for d in listed if self.only.allows(d.artifact_type)])
        missing = [d for d in wanted if self.dc.head_manifest(self.dst_repo, d.digest) is None]
        if self.fetch is None:
            return [Attached(subject, f"referrer {d.artifact_type or d.media_type}", None) for d in missing]
        held = [d for d in wanted if d not in missing]
        return list(self._referrers(subject, [d.digest for d in missing]).values()) + self._unindexed(subject, held)

    def _unindexed(self, subject: str, held: list[Descriptor]) -> list[Attached]:
        """Referrers the target holds but does not list (its fallback index failed to be written before): listed
        again, from the target's own copies (no pull). A target with the referrers API lists them itself."""
        if not held or self.dc.referrers(self.dst_repo, subject) is not None:
            return []
        try:
            listed = {c.digest for c in self.dc.get_manifest(self.dst_repo, fallback_tag(subject)).children}
        except NotFound:
            listed = set()
        return [Attached(subject, f"referrer {d.artifact_type or d.media_type} (listed again)", None,
                         [self.dc.get_manifest(self.dst_repo, d.digest)]) for d in held if d.digest not in listed]

    def _newest(self, subject: str, wanted: list[Descriptor]) -> list[Descriptor]:
        """At most `referrers-max` of a subject's referrers: the newest by their `created` annotation, then
        in the order listed. The rest stay behind with a warning (each would be a pull and several writes)."""
        self.found += len(wanted)
        most = self.only.most
        if len(wanted) <= most:
            return wanted
        first = self.only.first
        order = sorted(range(len(wanted)), key=lambda i: (kind_of(wanted[i].artifact_type) in first,
                                                          dict(wanted[i].annotations).get(CREATED) or "", -i),
                       reverse=True)
        self.warn(f"{len(wanted)} referrers of {subject}: the newest {most} travel, {len(wanted) - most} stay "
                  "behind (referrers-max)")
        return [wanted[i] for i in sorted(order[:most])]

    def _absent(self, tag: str) -> bool:
        return self.listed is not None and tag not in self.listed

    def _from_fallback(self, subject: str) -> list[Attached]:
        tag = fallback_tag(subject)
        if self._absent(tag):
            return []
        head = self.sc.head_manifest(self.src_repo, tag)
        if head is None:
            return []
        if self._unchanged(tag, head.digest):
            self.found += len(self.dc.get_manifest(self.dst_repo, tag).children)
            return []
        if self.fetch is None:
            return [Attached(subject, "fallback index (changed at the source)", tag)]
        (index,) = self.fetch([head.digest])
        wanted = self._newest(subject, [d for d in index.children if self.only.allows(d.artifact_type)])
        held = {e.digest for e in wanted if self.dc.head_manifest(self.dst_repo, e.digest) is not None}
        fetched = self._referrers(subject, [e.digest for e in wanted if e.digest not in held])
        out, kept = [], []
        for entry in wanted:
            attached = fetched.get(entry.digest)
            if attached is not None:
                attached.indexed = True
                out.append(attached)
            if attached is not None or entry.digest in held:
                kept.append(entry)
        # The target's index: the source's bytes when every entry came along, else the ones that did.
        written = index if kept == list(index.children) else _index_of(kept, index.digest)
        out.append(Attached(subject, "fallback index", tag, [written]))
        return out

    def _referrers(self, subject: str, digests: list[str]) -> dict[str, Attached]:
        """The referrers `digests` of `subject`, fetched together (one claim on the pull budget); one that
        is gone at the source or names another subject is skipped with a warning."""
        assert self.fetch is not None
        if not digests:
            return {}
        try:
            manifests: dict[str, Manifest | None] = dict(zip(digests, self.fetch(digests), strict=True))
        except NotFound:  # one is gone: the others again one by one (those fetched already are kept, not paid twice)
            manifests = {}
            for digest in digests:
                try:
                    manifests[digest] = self.fetch([digest])[0]
                except NotFound:
                    manifests[digest] = None
        out = {}
        for digest, manifest in manifests.items():  # warnings in the listing's order
            if manifest is None:
                self.warn(f"referrer {digest} of {subject} is listed but gone at the source: skipped")
                continue
            if manifest.subject != subject:
                self.warn(f"referrer {digest} names subject {manifest.subject or 'none'}, not {subject}: skipped")
                continue
            out[digest] = Attached(subject, f"referrer {manifest.artifact_type or manifest.media_type}", None,
                                   [manifest], list(manifest.blobs))
        return out

    def _cosign(self, subject: str) -> list[Attached]:
        out = []
        for suffix, kind in COSIGN_SUFFIXES.items():
            if not self.only.allows(None, kind):
                continue
            tag = fallback_tag(subject) + suffix
            if self._absent(tag):
                continue
            head = self.sc.head_manifest(self.src_repo, tag)
            if head is None:
                continue
            self.found += 1
            if self._unchanged(tag, head.digest):
                continue
            if self.fetch is None:
                out.append(Attached(subject, f"cosign {suffix}", tag))
                continue
            (manifest,) = self.fetch([head.digest])
            out.append(Attached(subject, f"cosign {suffix}", tag, [manifest], list(manifest.blobs)))
        return out

    def _unchanged(self, tag: str, digest: str) -> bool:
        """The target's tag holds the source's manifest, or an index written from it (filtered)."""
        held = self.dc.head_manifest(self.dst_repo, tag)
        if held is None:
            return False
        if held.digest == digest:
            return True
        try:
            return self.dc.get_manifest(self.dst_repo, held.digest).annotation(SOURCE_DIGEST) == digest
        except RegistryError:
            return False


def _index_of(entries: list[Descriptor], source_digest: str) -> Manifest:
    """A referrers index of some of a source index's entries, saying which index it came from."""
    manifests = []
    for d in entries:
        item: dict = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
        if d.artifact_type:
            item["artifactType"] = d.artifact_type
        if d.annotations:
            item["annotations"] = dict(d.annotations)
        manifests.append(item)
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
            "annotations": {SOURCE_DIGEST: source_digest}}
    return Manifest.parse(json.dumps(body, indent=3).encode(), OCI_INDEX)


def add_to_fallback(dc: RegistryClient, repo: str, subject: str, manifests: list[Manifest]) -> None:
    """On a target without the referrers API: list referrers in the subject's fallback index (read, add,
    write back once for all of them), as the distribution spec asks of clients."""
    tag = fallback_tag(subject)
    try:
        index = dc.get_manifest(repo, tag)
        data = json.loads(index.raw)
    except NotFound:
        data = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    listed = {e.get("digest") for e in data.get("manifests") or []}
    new = [m for m in manifests if m.digest not in listed]
    if not new:
        return
    for manifest in new:
        entry: dict = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)}
        if manifest.artifact_type:
            entry["artifactType"] = manifest.artifact_type
        if manifest.annotations:
            entry["annotations"] = dict(manifest.annotations)
        data.setdefault("manifests", []).append(entry)
    dc.put_manifest(repo, tag, Manifest.parse(json.dumps(data, indent=3).encode(), OCI_INDEX))
