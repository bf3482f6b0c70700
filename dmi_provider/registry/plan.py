"""What a copy decides (Plan, from HEADs and the manifests it fetched) and what it did (CopyResult). Plain
data: both cross process boundaries (Airflow XCom) through to_dict / from_dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from dmi_provider.registry.manifest import SOURCE_DIGEST, Descriptor, Manifest, from_json, to_json
from dmi_provider.registry.referrers import Attached

XCOM_MANIFEST_BYTES = 1 << 20  # manifest bytes one plan carries through XCom; the rest by digest


@dataclass
class CopyResult:
    source: str
    target: str
    status: str  # copied | unchanged | dry-run | rejected | quarantined (verify)
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
    verified_by: str | None = None  # verify: the fingerprints of the keys whose signatures were accepted
    reason: str | None = None  # rejected or quarantined: why, in one line

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

    def to_dict(self, carried: int | list[int] = XCOM_MANIFEST_BYTES) -> dict:
        """JSON-safe data. Manifests travel whole while their bytes add up to `carried`, the image's first;
        the rest go by digest only and are read again by the writer (a referrer manifest may be 4 MiB).
        `carried` as a one-item list is a room shared with other plans (one XCom value holds them all)."""
        room = carried if isinstance(carried, list) else [carried]

        def fits(m: Manifest) -> bool:
            if m.annotation(SOURCE_DIGEST):  # made by DMI (a filtered or partial index): the source has it not
                return True
            if len(m.raw) > room[0]:
                return False
            room[0] -= len(m.raw)
            return True

        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["manifests"] = [to_json(m, aside=not fits(m)) for m in self.manifests]
        data["attached"] = [a.to_dict(fits) for a in self.attached]
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
