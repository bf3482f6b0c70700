"""Plan many sections at once, then hand on only what changed. No Airflow import here.

A run's first step for a whole lane of sections (a DAG's sections that share a source pool): tags resolved,
HEADs at source and target, many sections side by side. What is settled by HEADs alone (unchanged, or a
dry run) becomes history rows at once; what needs work (changed, forced, or planning failed) is handed on as
items `[section, source tag, target tag]` for the copy steps. An item `[section, None, None]` means "the
whole section": its tags could not be listed here, so the copy steps list them again (and fail there, with
retries, if the source still refuses). No pull is spent: planning fetches no manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock

from dmi_provider import mirror
from dmi_provider.config import MirrorConfig, lane_of, load_config
from dmi_provider.engines import RunHooks
from dmi_provider.hints import config_hint
from dmi_provider.mirror import Pulled
from dmi_provider.pipeline import MirrorRun, Pair
from dmi_provider.spec import MirrorSpec
from dmi_provider.tracking.outcome import MirrorOutcome

Item = list  # [section, source tag | None, target tag | None]
PLAN_PARALLEL = 16  # sections planned at a time: HEADs are small, so more than blob copies


class SpecBook:
    """The sections of one config file, read when first asked (a task process reads the file once, at run
    time, not while its DAG is built). Shared, not copied, by the operators that hold it."""

    def __init__(self, path: str, config: MirrorConfig | None = None):
        self.path = path
        self._config = config
        self._lock = Lock()

    def __deepcopy__(self, memo: dict) -> SpecBook:
        return self

    @property
    def config(self) -> MirrorConfig:
        with self._lock:
            if self._config is None:
                self._config = load_config(self.path)
            return self._config

    def spec(self, section: str) -> MirrorSpec:
        try:
            return self.config.section(section)
        except KeyError:
            raise KeyError(f"section {section!r} is no longer in {self.path}: its run was planned from an "
                           f"earlier config.ini") from None

    def lane(self, dag_id: str, lane: str) -> list[MirrorSpec]:
        return [s for s in self.config.sections if s.dag_id == dag_id and lane_of(s) == lane]


@dataclass
class SectionPlan:
    """One section's planning: its pairs, the HEAD-only plans, or why planning failed."""

    spec: MirrorSpec
    pairs: tuple[Pair, ...] = ()
    pulled: Pulled | None = None
    error: str | None = None
    resolved: bool = True  # False: the tag listing failed, pairs are only the named tags
    notes: list[str] = field(default_factory=list)

    def items(self, force: bool, dry_run: bool) -> list[Item]:
        """What the copy steps must do for this section."""
        name = self.spec.section
        if not self.resolved:
            return [[name, None, None]]
        if self.error is not None or (force and not dry_run):
            return [[name, src, dst] for src, dst in self.pairs]
        if dry_run or self.pulled is None:
            return []
        return [[name, src, dst] for (src, dst), plan in zip(self.pairs, self.pulled.plans, strict=True)
                if plan.changed]

    def settled(self, run: mirror.RunInfo, force: bool, dry_run: bool) -> list[MirrorOutcome]:
        """History rows for what planning settled: unchanged pairs, or every pair of a dry run."""
        if self.pulled is None or self.error is not None or (force and not dry_run):
            return []
        keep = [i for i, plan in enumerate(self.pulled.plans) if dry_run or not plan.changed]
        pairs = [self.pairs[i] for i in keep]
        pulled = Pulled(self.pulled.target_host, dry_run, [self.pulled.plans[i] for i in keep])
        return mirror.outcomes(self.spec, pairs, run, pulled, [p.result() for p in pulled.plans], None)


def plan_section(spec: MirrorSpec, hooks: RunHooks, *, force: bool, dry_run: bool = False,
                 redact: Callable[[str], str] = str) -> SectionPlan:
    """Resolve a section's tags and HEAD each pair (nothing fetched; a forced run needs no HEAD unless it is a
    dry run, which says what it would do); a failure is kept, not raised."""
    run = MirrorRun(spec, hooks=hooks)
    out = SectionPlan(spec, run.pairs)
    try:
        if spec.selection.filter.active:
            out.resolved = False
            selection = run.resolve_tags()
            out.pairs, out.resolved = run.pairs, True
            for name, gone in selection.removed.items():
                out.notes.append(f"{name} left out {len(gone)} tags: {', '.join(gone[:50])}")
        if dry_run or not force:
            out.pulled = run.plan(force=force, dry_run=True)
    except Exception as exc:  # this section's copy steps try again, with retries, and record the failure
        out.error = redact(f"{type(exc).__name__}: {exc}{config_hint(exc)}")
    finally:
        run.close()
    return out


def plan_sections(specs: Sequence[MirrorSpec], hooks_for: Callable[[MirrorSpec], RunHooks], *, force: bool,
                  dry_run: bool, parallel: int = PLAN_PARALLEL, redact: Callable[[str], str] = str
                  ) -> list[SectionPlan]:
    """Every section's plan, `parallel` sections at a time, in the order given."""
    def one(spec: MirrorSpec) -> SectionPlan:
        return plan_section(spec, hooks_for(spec), force=force, dry_run=dry_run, redact=redact)

    if not specs:
        return []
    # The first alone: it learns the source's login challenge and whether it has the referrers API, so
    # that the others do not all ask (and meet a 401) at once.
    first = one(specs[0])
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs))), thread_name_prefix="dmi-plan") as pool:
        return [first, *pool.map(one, specs[1:])]


def all_items(plans: Iterable[SectionPlan], force: bool, dry_run: bool) -> list[Item]:
    return [item for plan in plans for item in plan.items(force, dry_run)]
