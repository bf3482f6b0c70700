"""Which tags a section mirrors: named tags, pinned digests, and filters over the source's tag list.
Plain Python: no Airflow import here.

A tag is a *version* when it reads MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD], with an optional leading
`v`; missing parts count as 0 (`7.2` is 7.2.0). Ranges (`tags-semver`) follow npm's semver grammar
(`>=1.20 <2`, `~1.7`, `^3`, `1.2.x`) through the node-semver package. Tags that are not versions never
match a range. Order of "newest": versions by precedence (a release after its pre-releases), equal
versions by name, descending (`v1.2.0` before `1.2.0`); non-versions come after all versions, by name
descending (dates such as `2026-11-01` sort newest first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import ClassVar

import nodesemver

from dmi_provider.errors import DmiError
from dmi_provider.registry.manifest import DESCRIPTOR_DIGEST
from dmi_provider.registry.reference import TAG_RE, check_tag

# A pre-release starts with a letter, so that dates (2026-11-01) are not versions.
_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([A-Za-z][0-9A-Za-z.-]*))?(?:\+[0-9A-Za-z.-]+)?",
                      re.ASCII)
DEFAULT_MAX = 100
HARD_MAX = 1000  # below Airflow's max_map_length (1024): a section's tags are one mapped group


@dataclass(frozen=True)
class TagFilter:
    """The filter keys of a section; `active` when any of them is set."""

    matching: tuple[str, ...] = ()
    excluding: tuple[str, ...] = ()
    semver: str | None = None
    prerelease: bool = False
    newest: int | None = None
    max: int = DEFAULT_MAX
    SELECTING: ClassVar[tuple[str, ...]] = ("matching", "excluding", "semver", "newest")  # what makes it active

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in self.SELECTING)


@dataclass
class Selection:
    tags: list[str]
    removed: dict[str, list[str]] = field(default_factory=dict)  # filter -> tags it removed


class TooManyTags(DmiError):
    """More tags than tags-max: not retried (the same listing comes back)."""


def version(tag: str) -> str | None:
    """The semver text of a tag that is a version (see the module's rule), else None."""
    m = _VERSION.fullmatch(tag)
    if not m:
        return None
    major, minor, patch, pre = m.groups()
    text = f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}" + (f"-{pre}" if pre else "")
    return text if nodesemver.valid(text, loose=True) else None


def split_pin(text: str) -> tuple[str | None, str | None]:
    """`1.7.0@sha256:…` -> ("1.7.0", "sha256:…"); `@sha256:…` -> (None, "sha256:…"); `1.7.0` -> ("1.7.0", None)."""
    tag, sep, digest = text.partition("@")
    return (tag or None, digest) if sep else (text, None)


def check_tag_or_pin(text: str) -> str:
    """A tag, or a pin: the tag grammar and the digests a manifest descriptor may carry."""
    tag, digest = split_pin(text)
    if digest is None:
        return check_tag(text)
    if (tag is not None and not TAG_RE.fullmatch(tag)) or not DESCRIPTOR_DIGEST.fullmatch(digest):
        raise ValueError(f"{text!r} is not TAG@sha256:<64 hex> or @sha256:<64 hex> (a pinned digest)")
    return text


def check_range(text: str) -> str:
    if nodesemver.valid_range(text, loose=True) is None:
        raise ValueError(f"{text!r} is not a semver range: e.g. >=1.20 <2, ~1.7, ^3, 1.2.x")
    return text


def check_pattern(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a regular expression: {exc}") from None
    return text


def describe_filter(spec: TagFilter) -> str:
    """The filters in config.ini's words, e.g. `tags-semver >=7 <8, tags-newest 3`."""
    parts = [f"tags-matching {' '.join(spec.matching)}" if spec.matching else "",
             f"tags-excluding {' '.join(spec.excluding)}" if spec.excluding else "",
             f"tags-semver {spec.semver}" if spec.semver else "",
             "tags-prerelease true" if spec.prerelease and spec.semver else "",
             f"tags-newest {spec.newest}" if spec.newest else ""]
    return ", ".join(p for p in parts if p)


def newest_first(tags: Iterable[str]) -> list[str]:
    """Newest first (the module's rule); each tag is parsed once."""
    parsed = {t: nodesemver.make_semver(v, loose=True) if (v := version(t)) else None for t in dict.fromkeys(tags)}

    def order(a: str, b: str) -> int:
        va, vb = parsed[a], parsed[b]
        if va is not None and vb is not None:
            return vb.compare(va) or (a < b) - (a > b)
        if va is not None or vb is not None:
            return -1 if va is not None else 1
        return (a < b) - (a > b)

    return sorted(parsed, key=cmp_to_key(order))


def select(available: Sequence[str], named: Sequence[str], spec: TagFilter) -> Selection:
    """The tags to mirror: the filters over `available` (the source's list), in union with `named`
    (always kept). Raises TooManyTags past `spec.max`."""
    removed: dict[str, list[str]] = {}
    kept = list(dict.fromkeys(available))

    def apply(name: str, keep: list[str]) -> None:
        nonlocal kept
        keeping = set(keep)
        gone = [t for t in kept if t not in keeping]
        if gone:
            removed[name] = gone
        kept = keep

    if spec.matching:
        apply("tags-matching", [t for t in kept if any(re.fullmatch(p, t) for p in spec.matching)])
    if spec.excluding:
        apply("tags-excluding", [t for t in kept if not any(re.fullmatch(p, t) for p in spec.excluding)])
    if spec.semver:
        apply("tags-semver", [t for t in kept if (v := version(t)) and nodesemver.satisfies(
            v, spec.semver, loose=True, include_prerelease=spec.prerelease) and (spec.prerelease or "-" not in v)])
    kept = newest_first(kept)
    if spec.newest:
        apply("tags-newest", kept[: spec.newest])
    chosen = list(dict.fromkeys([*named, *kept]))
    if len(chosen) > spec.max:
        raise TooManyTags(f"{len(chosen)} tags match, more than tags-max = {spec.max}: narrow the filters or "
                          f"raise tags-max (newest: {', '.join(chosen[:5])}, ...)")
    return Selection(chosen, removed)
