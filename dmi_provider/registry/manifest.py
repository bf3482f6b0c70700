"""Manifest media types and the little we read from manifests (children, blobs, platforms).

Raw bytes are always kept: a manifest is never re-serialised unless a platform filter writes a new
index, and that one says so in its annotations.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from dmi_provider.registry.errors import DigestMismatch, ManifestInvalid
from dmi_provider.registry.wire import loads

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_TYPES = ", ".join((*INDEX_TYPES, *IMAGE_TYPES))
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
FOREIGN_LAYERS = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar")
# What a descriptor's digest may be: it goes into URLs, so nothing else passes (no '&', '/', '..').
DESCRIPTOR_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# Annotations of an index that a platform filter wrote.
SOURCE_DIGEST = "io.dmi.source.digest"
SOURCE_PLATFORMS = "io.dmi.platforms"
# BuildKit keeps an image's attestations in the index itself, as an entry naming the image it is about.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def foreign(self) -> bool:
        return self.media_type in FOREIGN_LAYERS or bool(self.urls)


def _platform(entry: dict) -> str | None:
    p = entry.get("platform")
    if not isinstance(p, dict) or not p.get("os") or not p.get("architecture"):
        return None
    return "/".join(str(x) for x in (p["os"], p["architecture"], p.get("variant")) if x)


def _descriptor(entry: object, where: str) -> Descriptor:
    """A descriptor of a parsed manifest; anything malformed is a ManifestInvalid naming `where`."""
    if not isinstance(entry, dict):
        raise ManifestInvalid(f"{where}: a descriptor is not a JSON object")
    digest, size, urls = entry.get("digest"), entry.get("size", 0), entry.get("urls") or []
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: a descriptor has no digest")
    if not DESCRIPTOR_DIGEST.fullmatch(digest):
        raise ManifestInvalid(f"{where}: descriptor digest {digest[:100]!r} is not sha256:<64 hex> or "
                              "sha512:<128 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: descriptor {digest} has an invalid size {size!r}")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalid(f"{where}: descriptor {digest} has invalid urls")
    notes = entry.get("annotations") or {}
    annotations = tuple(sorted((str(k), str(v)) for k, v in notes.items())) if isinstance(notes, dict) else ()
    kind = entry.get("artifactType")
    return Descriptor(str(entry.get("mediaType", "")), digest, size, _platform(entry), tuple(urls),
                      str(kind) if kind else None, annotations)


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # an index's manifests
    blobs: tuple[Descriptor, ...] = ()  # an image's config and layers
    annotations: tuple[tuple[str, str], ...] = ()
    subject: str | None = None  # the digest an OCI 1.1 referrer refers to
    artifact_type: str | None = None  # `artifactType`, else the config's media type (OCI 1.1)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def aside(self) -> bool:
        """Planned, but its bytes left out of the plan (XCom): to be read again by digest before writing."""
        return not self.raw

    @classmethod
    def parse(cls, raw: bytes, media_type: str, digest: str | None = None) -> Manifest:
        digest = digest or "sha256:" + hashlib.sha256(raw).hexdigest()
        where = f"manifest {digest}"
        try:
            data = loads(raw)
        except ValueError as exc:
            raise ManifestInvalid(f"{where} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestInvalid(f"{where} is not a JSON object")
        media_type = str(data.get("mediaType") or media_type or "")
        if not media_type:  # OCI allows mediaType to be absent: tell by shape
            media_type = OCI_INDEX if "manifests" in data else OCI_MANIFEST
        if media_type not in INDEX_TYPES + IMAGE_TYPES:
            raise ManifestInvalid(f"{where} has unsupported media type {media_type!r}")
        notes = data.get("annotations") or {}
        if not isinstance(notes, dict):
            raise ManifestInvalid(f"{where}: annotations is not a JSON object")
        annotations = tuple(sorted((str(k), str(v)) for k, v in notes.items()))
        subject = _descriptor(data["subject"], where).digest if data.get("subject") else None
        kind = data.get("artifactType")
        if media_type in INDEX_TYPES:
            children = tuple(_descriptor(e, where) for e in _list(data, "manifests", where))
            return cls(raw, media_type, digest, children=children, annotations=annotations, subject=subject,
                       artifact_type=str(kind) if kind else None)
        blobs = [_descriptor(data["config"], where)] if data.get("config") else []
        blobs += [_descriptor(e, where) for e in _list(data, "layers", where)]
        if not kind and blobs and blobs[0].media_type not in (OCI_CONFIG, DOCKER_CONFIG):
            kind = blobs[0].media_type  # OCI 1.1: an artifact's type may be its config's media type
        return cls(raw, media_type, digest, blobs=tuple(blobs), annotations=annotations, subject=subject,
                   artifact_type=str(kind) if kind else None)

    def platforms(self) -> tuple[str, ...]:
        return tuple(c.platform for c in self.children if c.platform)

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


def to_json(manifest: Manifest, aside: bool = False) -> dict:
    """A manifest as JSON-safe data (XCom): its exact bytes, base64; `aside`: its digest only (the writer
    reads it again by digest: large plans stay out of Airflow's database)."""
    if aside or manifest.aside:
        return {"media_type": manifest.media_type, "digest": manifest.digest, "aside": True}
    return {"media_type": manifest.media_type, "digest": manifest.digest,
            "raw": base64.b64encode(manifest.raw).decode()}


def from_json(data: dict) -> Manifest:
    """The reverse, checked: bytes that no longer hash to their digest are refused. A manifest set aside
    comes back without its bytes (`aside`), for the writer to read again by digest."""
    if data.get("aside"):
        if not DESCRIPTOR_DIGEST.fullmatch(str(data.get("digest"))):
            raise ManifestInvalid(f"planned manifest {str(data.get('digest'))[:80]!r} is not a digest")
        return Manifest(b"", str(data["media_type"]), str(data["digest"]))
    manifest = Manifest.parse(base64.b64decode(data["raw"]), data["media_type"])
    if manifest.digest != data["digest"]:
        raise DigestMismatch(f"planned manifest {data['digest']} changed on its way: {manifest.digest}")
    return manifest


def _list(data: dict, key: str, where: str) -> list:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ManifestInvalid(f"{where}: {key} is not a list")
    return value


def platform_matches(platform: str | None, wanted: str) -> bool:
    """`linux/arm64` matches `linux/arm64/v8`; a wanted variant must match exactly."""
    if platform is None:
        return False
    have, want = platform.split("/"), wanted.split("/")
    return have[: len(want)] == want or (len(want) == 3 and len(have) == 2 and have == want[:2] and want[2] == "v8")


def filter_index(index: Manifest, platforms: tuple[str, ...]) -> tuple[Manifest, tuple[Descriptor, ...]]:
    """A new index with only the wanted platforms, annotated with the source digest it came from."""
    data = json.loads(index.raw)
    entries = data.get("manifests") or ()
    keep = [e for e in entries if any(platform_matches(_platform(e), p) for p in platforms)]
    kept = {e.get("digest") for e in keep}
    # BuildKit's attestation manifests of the kept images stay with them.
    keep += [e for e in entries if isinstance(e.get("annotations"), dict)
             and e["annotations"].get(REFERENCE_TYPE) == "attestation-manifest"
             and e["annotations"].get(REFERENCE_DIGEST) in kept]
    data["manifests"] = keep
    annotations = dict(data.get("annotations") or {})
    annotations[SOURCE_DIGEST] = index.digest
    annotations[SOURCE_PLATFORMS] = ",".join(platforms)
    data["annotations"] = annotations
    raw = json.dumps(data, indent=3).encode()
    filtered = Manifest.parse(raw, index.media_type)
    return filtered, filtered.children


def unique_blobs(images: list[Manifest]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for image in images:
        for blob in image.blobs:
            seen.setdefault(blob.digest, blob)
    return list(seen.values())


def check_child(src: str, child: Descriptor, manifest: Manifest) -> None:
    """The child must be what its index says: an image manifest of the announced type and size."""
    if manifest.is_index:
        raise ManifestInvalid(f"{src}: child {child.digest} is an index (nested indexes are not supported)")
    if child.media_type and manifest.media_type != child.media_type:
        raise ManifestInvalid(f"{src}: child {child.digest} is {manifest.media_type}, its index says "
                              f"{child.media_type}")
    if len(manifest.raw) != child.size:
        raise ManifestInvalid(f"{src}: child {child.digest} has {len(manifest.raw)} bytes, its index says "
                              f"{child.size}")
