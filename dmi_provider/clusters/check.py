"""Whether the mirror holds the images that workloads use (`dmi check-images`): each image judged against
config.ini's mapping and, unless told not to, the tracking history. Plain Python.

An image may name its upstream (`istio/proxyv2:1.7.0`) or the mirror already (`HOST/istio/proxyv2:1.7.0`,
after a rewrite); either way one section covers it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from dmi_provider.clusters.manifests import ImageUse
from dmi_provider.clusters.mapping import Mirrored
from dmi_provider.config import MirrorConfig
from dmi_provider.errors import DmiError, first_line
from dmi_provider.registry.reference import DOCKER_HUB, InvalidReference, Reference, parse_reference
from dmi_provider.tags import describe_filter, select, split_pin

GOOD = ("copied", "unchanged")
MIRRORED, STALE, NOT_YET, MISSING = "mirrored", "stale", "not yet mirrored", "missing"
CONFIGURED, INVALID = "configured", "invalid"  # configured: --no-history's "covered"
RANK = {MIRRORED: 0, CONFIGURED: 0, STALE: 1, NOT_YET: 2, MISSING: 3, INVALID: 4}
HISTORY_ROWS = 5000  # history rows read per repository, for digest references


class HistoryError(DmiError):
    """The tracking history could not be read."""


class Store(Protocol):
    """What the check reads of a TrackingStore."""

    def state(self) -> list[dict]: ...

    def history(self, limit: int = ..., **filters: Any) -> list[dict]: ...


@dataclass(frozen=True)
class Verdict:
    """One distinct image: its status, why, and where the mirror holds it."""

    image: str  # as the manifests write it
    status: str
    reason: str = ""
    reference: Reference | None = None
    section: str | None = None  # the section that mirrors it, or that covers its repository
    mirror: str | None = None  # the mirror's repository[:tag]
    digest: str | None = None  # what the mirror holds
    checked: datetime | None = None
    uses: tuple[ImageUse, ...] = ()

    @property
    def failing(self) -> bool:
        """Counts against the check: not in the mirror (or not an image at all)."""
        return self.status in (MISSING, NOT_YET, INVALID)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "reference": str(self.reference) if self.reference else None,
                "status": self.status, "reason": self.reason or None, "section": self.section,
                "mirror": self.mirror, "digest": self.digest,
                "last_checked": self.checked.isoformat() if self.checked else None,
                "uses": [u.to_dict() for u in self.uses]}


def clock() -> datetime:
    """Now, for the age of a state row (a test sets it)."""
    return datetime.now(UTC)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def short(digest: str) -> str:
    return digest[:19]  # sha256: and 12 hex digits, as `dmi history` shows them


def _name(text: str) -> str:
    try:
        return parse_reference(text, default_tag=None).name
    except InvalidReference:
        return ""


class History:
    """The tracking tables as the check reads them: every state row once, history rows per repository."""

    def __init__(self, store: Store):
        self.store = store
        rows = self._read(store.state)
        self.by_target = {r["target"]: r for r in rows}
        self.by_source = {(r["section"], r["source"]): r for r in rows}
        self._good: dict[str, list[dict]] = {}

    @staticmethod
    def _read(query: Callable[[], list[dict]]) -> list[dict]:
        from sqlalchemy.exc import SQLAlchemyError  # here: `dmi` starts without SQLAlchemy

        try:
            return query()
        except (SQLAlchemyError, DmiError, RuntimeError) as exc:  # RuntimeError: a schema of another DMI
            raise HistoryError(first_line(exc)) from exc

    def state(self, m: Mirrored, src: str, dst: str) -> dict | None:
        """The state row of one of a section's tags: by its target, else by its source."""
        return self.by_target.get(m.mirror_reference(dst)) or self.by_source.get((m.section,
                                                                                 f"{m.upstream_name}:{src}"))

    def copies(self, name: str, digest: str) -> list[dict]:
        """The good rows, newest first, whose source or target is repository `name` and that wrote `digest`."""
        if name not in self._good:
            rows = self._read(lambda: self.store.history(limit=HISTORY_ROWS, image=name))
            self._good[name] = [r for r in rows if r["status"] in GOOD
                                and name in (_name(r["source"]), _name(r["target"]))]
        # The mirror's digest only: a `platforms` section writes its own index, so the upstream's index digest
        # (its source_digest) is not at the mirror, and a pod pinning it would not pull from there.
        return [r for r in self._good[name] if r["target_digest"] == digest]


@dataclass(frozen=True)
class Check:
    """What the images are judged against."""

    config: MirrorConfig
    mirrors: Sequence[Mirrored]
    history: History | None = None  # None: config.ini only
    now: datetime = field(default_factory=lambda: clock())

    def pins(self, section: str) -> set[str]:
        return {d for t in self.config.section(section).selection.tags if (d := split_pin(t)[1])}

    def refresh(self, section: str) -> str:
        spec = self.config.section(section)
        return spec.refresh.text if spec.refresh else "0"


def judge(uses: Sequence[ImageUse], check: Check) -> list[Verdict]:
    """One verdict per distinct image (references that mean the same image are one), by reference."""
    groups: dict[str, list[ImageUse]] = {}
    refs: dict[str, Reference | str] = {}  # a reference, or why the text is none
    for use in uses:
        try:
            if use.problem:
                raise InvalidReference(use.problem)
            ref = parse_reference(use.image)
            key = str(ref)
            refs[key] = ref
        except InvalidReference as exc:
            key = f"\0{use.image}"
            refs[key] = str(exc)
        groups.setdefault(key, []).append(use)
    out = []
    for key, found in groups.items():
        image, parsed = min(u.image for u in found), refs[key]
        verdict = _judge(parsed, check) if isinstance(parsed, Reference) else Verdict("", INVALID, parsed)
        out.append(replace(verdict, image=image, uses=tuple(found)))
    return sorted(out, key=lambda v: (str(v.reference or v.image), v.image))


def _judge(ref: Reference, check: Check) -> Verdict:
    sections = [m for m in check.mirrors if ref.name in (m.upstream_name, m.mirror_name)]
    if not sections:
        into = any(ref.registry == m.host for m in check.mirrors)
        return Verdict("", MISSING, f"no section mirrors {'into ' if into else ''}{ref.name}", ref)
    verdicts = [_digest(ref, m, check) if ref.digest else _tag(ref, m, check) for m in sections]
    return min(verdicts, key=lambda v: RANK[v.status])  # the first of the best, in config order


def _pair(m: Mirrored, ref: Reference) -> tuple[str, str] | None:
    """(upstream tag, mirror tag) of the named tag `ref` means, at the upstream or at the mirror."""
    at_mirror = ref.name == m.mirror_name and ref.name != m.upstream_name
    for src, dst in m.tags:
        if src is not None and (dst if at_mirror else src) == ref.tag:
            return src, dst
    return None


def _left_out(m: Mirrored, tag: str, named: bool, at_mirror: bool = False) -> str | None:
    """Why section `m` does not mirror `tag`, or None when it names the tag or its filters keep it."""
    if named:
        return None
    if m.filter.active:
        chosen = select([tag], [], m.filter)
        if tag in chosen.tags:
            return None
        by = " and ".join(chosen.removed)
        return f"[{m.section}] mirrors {m.upstream_name}, but its {by} leave{'s' if len(chosen.removed) == 1 else ''}" \
               f" out {tag}"
    listed = ", ".join(dst if at_mirror else src or dst for src, dst in m.tags)
    return f"[{m.section}] mirrors {m.upstream_name}, but not tag {tag} (it names {listed}" + \
        (" at the mirror)" if at_mirror else ")")


def _filter_note(m: Mirrored) -> str:
    newest = f" (if among the newest {m.filter.newest})" if m.filter.newest else ""
    return f"selected by [{m.section}]'s {describe_filter(m.filter)}{newest}"


def _tag(ref: Reference, m: Mirrored, check: Check) -> Verdict:
    tag = ref.tag or "latest"
    pair = _pair(m, ref)
    src, dst = pair or (tag, tag)  # a tag no section names keeps its name at the mirror (filters rename none)
    state = check.history.state(m, src, dst) if check.history else None
    copied = state is not None and state["first_mirrored"] is not None
    at_mirror = ref.name == m.mirror_name and ref.name != m.upstream_name
    why_not = _left_out(m, tag, pair is not None, at_mirror)
    if why_not and not copied:
        return Verdict("", MISSING, why_not, ref, m.section)
    note = f"no longer selected by [{m.section}]: not refreshed" if why_not else (
        "" if pair else _filter_note(m))
    base = Verdict("", CONFIGURED, note, ref, m.section, m.mirror_reference(dst))
    if state is None or not copied:
        if check.history is None:
            return base
        last = f" (the last run {state['last_status']}, {when(state['last_checked'])})" if state else ""
        return replace(base, status=NOT_YET, reason=f"{note or f'named in [{m.section}]'}, not mirrored yet{last}")
    reason = note if why_not else ""  # how a filter chose it matters only until it is mirrored
    return _fresh(replace(base, reason=reason, digest=state["last_digest"], checked=state["last_checked"]), state, m,
                  check)


def _fresh(verdict: Verdict, state: dict, m: Mirrored, check: Check) -> Verdict:
    """Mirrored, or stale: its last run was not good, or it was not checked for twice its refresh."""
    checked = state["last_checked"]
    why = ""
    if state["last_status"] not in GOOD:
        why = f"the last run {state['last_status']}, {when(checked)}"
    elif m.refresh_seconds and checked and (check.now - checked).total_seconds() > 2 * m.refresh_seconds:
        why = f"last checked {when(checked)}, more than twice its refresh ({check.refresh(m.section)}) ago"
    reason = "; ".join(r for r in (why, verdict.reason) if r)
    return replace(verdict, status=STALE if why else MIRRORED, reason=reason)


def _digest(ref: Reference, m: Mirrored, check: Check) -> Verdict:
    """A digest is in the mirror when a good run copied it; config.ini alone knows only pins."""
    digest = ref.digest or ""
    pinned = digest in check.pins(m.section)
    pair = _pair(m, ref) if ref.tag else None
    tagged = ref.tag is not None and _left_out(m, ref.tag, pair is not None) is None
    dst = pair[1] if pair else ref.tag
    base = Verdict("", CONFIGURED, "", ref, m.section, m.mirror_reference(dst), digest)
    if check.history is None:
        if pinned:
            return replace(base, reason=f"pinned in [{m.section}]")
        if tagged:
            return replace(base, reason=f"[{m.section}] mirrors tag {ref.tag}; only the history tells whether it "
                                        "held this digest")
        return replace(base, status=MISSING, mirror=None, digest=None,
                       reason=f"[{m.section}] mirrors {m.upstream_name}, but pins no {short(digest)}")
    copies = check.history.copies(ref.name, digest)
    if copies:
        row = copies[0]
        return replace(base, status=MIRRORED, digest=row["target_digest"] or digest, checked=row["finished_at"])
    if pinned:
        return replace(base, status=NOT_YET, digest=None, reason=f"pinned in [{m.section}], not mirrored yet")
    held = f": it mirrors tag {ref.tag}, which held another digest" if tagged else ""
    return replace(base, status=MISSING, mirror=None, digest=None,
                   reason=f"no run of [{m.section}] copied {short(digest)}{held}")


def summary(verdicts: Sequence[Verdict], history: bool = True) -> str:
    """`N images: a mirrored, b stale, c missing` (with `not yet mirrored` among the missing)."""
    count = {s: sum(1 for v in verdicts if v.status == s) for s in RANK}
    n = len(verdicts)
    if history:
        parts = [f"{count[MIRRORED]} mirrored", f"{count[STALE]} stale", f"{count[MISSING] + count[NOT_YET]} missing"
                 + (f" ({count[NOT_YET]} not yet mirrored)" if count[NOT_YET] else "")]
    else:
        parts = [f"{count[CONFIGURED]} configured", f"{count[MISSING]} missing"]
    if count[INVALID]:
        parts.append(f"{count[INVALID]} invalid")
    return f"{n} image{'s' if n != 1 else ''}: {', '.join(parts)}"


def _free(name: str, taken: set[str]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    taken.add(out)
    return out


def _section(name: str, upstream: str, tags: Sequence[str], extra: Sequence[str] = (),
             target_repository: str | None = None) -> list[str]:
    """A config.ini section in the original tool's format, the mirror's path that of the upstream."""
    registry, _, path = upstream.partition("/")
    namespace, _, image = path.rpartition("/")
    lines = [f"[{name}]", f"image = {image}"]
    if namespace:
        lines.append(f"source-repository = {namespace}")
    if registry != DOCKER_HUB:
        lines.append(f"source-registry = {registry}")
    lines.append(f"tag = {tags[0]}" if len(tags) == 1 else f"tags = {', '.join(tags)}")
    lines += extra
    if target_repository or not namespace:
        lines.append(f"target-repository = {target_repository or image}")
    else:
        lines.append(f"project = {namespace}")
    return lines


def suggest(verdicts: Sequence[Verdict], check: Check) -> list[str]:
    """config.ini text for the missing images, ready to paste: a section per uncovered repository, a digest
    per section (it needs target-tag), and for a covered repository the tags line its section needs."""
    by_section = {m.section: m for m in check.mirrors}
    hosts = {m.host for m in check.mirrors}
    taken = {s.section for s in check.config.sections}
    new: dict[str, list[str]] = {}  # uncovered upstream repository -> tags (pins)
    added: dict[str, list[str]] = {}  # section -> tags it should name too
    alone: list[list[str]] = []  # sections of their own
    notes: list[str] = []
    for v in verdicts:
        ref, m = v.reference, by_section.get(v.section or "")
        if v.status != MISSING or ref is None:
            continue
        if m is None and ref.registry in hosts:
            notes.append(f"# {ref}: names the mirror, which no section fills at {ref.name}: its upstream is unknown")
        elif ref.digest and (m is not None or not ref.tag):
            alone.append(_pinned(ref, m, check, taken))
        elif m is None:
            new.setdefault(ref.name, []).append(f"{ref.tag}@{ref.digest}" if ref.digest else ref.tag or "latest")
        elif (spec := check.config.section(m.section)).target.tag:  # target-tag takes one tag: a section apart
            alone.append(_section(_free(f"{m.section}-{ref.tag}", taken), m.upstream_name, [ref.tag or "latest"],
                                  target_repository=spec.target.repository))
        else:
            added.setdefault(m.section, []).append(ref.tag or "latest")
    out = [*notes]
    for section, tags in added.items():
        named = check.config.section(section).selection.tags
        out.append(f"# add to [{section}] (in place of its tag/tags lines): tags = "
                   f"{', '.join(dict.fromkeys([*named, *tags]))}")
    for upstream, tags in new.items():
        image = upstream.rsplit("/", 1)[1]
        name = image if image not in taken else upstream.split("/", 1)[1].replace("/", "-")
        out += ["", *_section(_free(name, taken), upstream, list(dict.fromkeys(tags)))]
    for lines in alone:
        out += ["", *lines]
    if out and check.config.default_refresh is None:
        out.insert(0, "# these sections need refresh (set it in each, or in [DEFAULT])")
    return out


def _pinned(ref: Reference, m: Mirrored | None, check: Check, taken: set[str]) -> list[str]:
    """A section of its own for a digest: `@sha256:…` needs target-tag, and target-tag one tag only."""
    digest = ref.digest or ""
    hex12 = digest.partition(":")[2][:12]
    upstream = m.upstream_name if m else ref.name
    image = upstream.rsplit("/", 1)[1]
    target = check.config.section(m.section).target.repository if m else None
    return _section(_free(f"{image}-{hex12}", taken), upstream, [f"@{digest}"],
                    [f"target-tag = {ref.tag or 'digest'}-{hex12}"], target)
