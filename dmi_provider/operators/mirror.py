"""The five operators of a mirror task group: pull -> tag -> ensure_repository -> push -> record.

Airflow glue only: they read the context, ask the section's Engine (how bytes move) and Target (where
they go), and pass small plain data on through XCom (plans with verified manifests, digests, counters),
never credentials. No operator knows an engine or a target by name. Each can be used on its own in a
user's DAG; see README, "Operators in your own DAGs".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, NoReturn

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import Asset, AssetAlias, BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.sdk.log import redact

from dmi_provider import mirror
from dmi_provider.errors import DmiError, is_retryable
from dmi_provider.hints import config_hint
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.mirror import Pulled
from dmi_provider.pipeline import MirrorRun, Pushed, RunHooks, fleet_locations, pull_ledger
from dmi_provider.planner import Item, SpecBook
from dmi_provider.registry.budget import PullsShort
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import split_pin
from dmi_provider.tracking.store import TrackingError, TrackingStore

TagPairs = Sequence[str | Sequence[str]]
RETRY_429 = 60.0  # seconds to wait after a 429 that says nothing of when to come back


class MirrorBaseOperator(BaseOperator):
    """What the five operators share: one section's spec, the tags this task mirrors, and the run's params.

    :param spec: the section's settings (``dmi_provider.spec.MirrorSpec``): from config.ini, or from keys with
        ``dmi_provider.config.section_spec({"image": …, "tag": …, "project": …})``
    :param tags: tags to mirror (``1.7.0``, a pin ``1.7.0@sha256:…``), or ``(source tag, target tag)`` pairs
        (templated: a mapped task group passes each instance its pair); default: the spec's named tags
    :param book: instead of ``spec``: a config file's sections (``dmi_provider.planner.SpecBook``), read when the
        task runs; DMI's own DAGs pass it with ``item``
    :param item: ``[section, source tag, target tag]`` from the planning task (templated, mapped); ``[section,
        None, None]``: the pull task lists the section's tags itself
    :param pull_task_id: the task id of the group's pull task (plans come from its XCom)
    :param push_task_id: the task id of the group's push task (results come from its XCom)
    """

    # tags and item are templated so that a mapped task group can hand each instance its own.
    template_fields: Sequence[str] = ("tags", "item")
    ui_color = "#e8f1fb"

    def __init__(self, *, spec: MirrorSpec | None = None, tags: TagPairs | None = None, book: SpecBook | None = None,
                 item: Item | None = None, pull_task_id: str = "pull", push_task_id: str = "push", **kwargs: Any):
        super().__init__(**kwargs)
        if spec is None and book is None:
            raise TypeError(f"{type(self).__name__} needs spec= (or book= and item=, as DMI's DAGs pass)")
        self._spec = spec
        self.book = book
        self.item = item
        self.tags = tags
        self.pull_task_id = pull_task_id
        self.push_task_id = push_task_id
        self.listed: tuple[tuple[str, str], ...] | None = None  # an item's tags, listed by its pull task

    @property
    def spec(self) -> MirrorSpec:
        """The section's spec: given, or (in DMI's DAGs) read from config.ini by the section of the item."""
        if self._spec is None:
            assert self.book is not None and self.item
            self._spec = self.book.spec(self.item[0])
        return self._spec

    @property
    def section(self) -> str:
        return self.item[0] if self.item else self.spec.section

    def pairs(self) -> tuple[tuple[str, str], ...] | None:
        """The (source tag, target tag) pairs of this task; None: the section's tags are still to be listed."""
        if self.item:
            return self.listed if self.item[1] is None else ((self.item[1], self.item[2] or self.item[1]),)
        if self.tags is None:
            return self.spec.pairs()
        return tuple((t, split_pin(t)[0] or t) if isinstance(t, str) else (t[0], t[1]) for t in self.tags)

    # -- the section's pipeline (built at run time, after templates) ----------------------------------
    @cached_property
    def mirror_run(self) -> MirrorRun:
        hooks = RunHooks(say=self.log.info, history=self.last_good, ledger=pull_ledger(self.tracking_url),
                         locations=self.blob_locations(), known=self.__dict__.get("known_manifests"))
        return MirrorRun(self.spec, self.pairs(), hooks)

    def blob_locations(self) -> Callable[[], BlobLocations] | None:
        """Where blobs sit; the push task shares them with the fleet (the others write no blob)."""
        return None

    def tracking_url(self) -> str:
        return tracking_url(self.spec.tracking_conn_id, self.spec.env.db_path)

    def tracking_store(self) -> TrackingStore:
        return TrackingStore(self.tracking_url())

    def last_good(self, target: str) -> dict | None:
        store = self.tracking_store()
        try:
            return store.last_good(target)
        finally:
            store.close()

    # -- the run's params --------------------------------------------------------------------------
    @staticmethod
    def run_params(context: Any) -> tuple[bool, bool, list[str]]:
        params = context.get("params") or {}
        return bool(params.get("force", False)), bool(params.get("dry_run", False)), list(params.get("sections") or [])

    def skip_unless_selected(self, context: Any) -> None:
        sections = self.run_params(context)[2]
        if sections and self.section not in sections:
            raise AirflowSkipException(f"section {self.section!r} is not in this run's sections: {sections}")
        if self.item and self.item[1] is None and self.task_id != self.pull_task_id:
            listed = self.sibling(context, self.pull_task_id, "pairs")
            self.listed = tuple((p[0], p[1]) for p in listed) if listed else None

    def pulled(self, context: Any) -> Pulled | None:
        data = self.sibling(context, self.pull_task_id)
        return Pulled.from_xcom(data) if data is not None else None

    @staticmethod
    def sibling(context: Any, task_id: str, key: str = "return_value") -> Any:
        """An XCom of another task of this group: of the same tag when the group is mapped over tags."""
        ti = context["ti"]
        index = getattr(ti, "map_index", -1)
        if index is not None and index >= 0:
            return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index)
        return ti.xcom_pull(task_ids=task_id, key=key)

    def skip_unless_copying(self, context: Any) -> Pulled:
        pulled = self.pulled(context)
        if pulled is None:
            raise AirflowSkipException("pull produced no plan")
        if pulled.dry_run:
            raise AirflowSkipException("dry run: nothing is written at the target")
        if not pulled.changed:
            raise AirflowSkipException("unchanged: the target already holds the source digests")
        return pulled

    def guarded(self, context: Any, work: Callable[[], Any]) -> Any:
        """Run `work`; on failure leave the reason (redacted) in XCom for record, and fail without
        retries when retrying cannot help (404, 403, bad manifests). Always close the engine."""
        try:
            return work()
        except (AirflowSkipException, AirflowFailException):
            raise
        except Exception as exc:
            text = str(redact(f"{type(exc).__name__}: {exc}{config_hint(exc)}"))
            context["ti"].xcom_push(key="error", value=text)
            line = f"section {self.section!r}: {text}"
            if not is_retryable(exc):
                raise AirflowFailException(line) from None
            if isinstance(exc, DmiError):  # understood: its one line, not a traceback through DMI's internals
                raise AirflowException(line) from None
            raise
        finally:
            if "mirror_run" in self.__dict__:
                self.mirror_run.close()
                del self.__dict__["mirror_run"]


class ResolveTagsOperator(MirrorBaseOperator):
    """The tags a section with ``tags-*`` filters mirrors in this run: one listing of the source's tags
    (not a pull), filtered; returns the (source tag, target tag) pairs the group is mapped over."""

    def execute(self, context: Any) -> list[list[str]]:
        self.skip_unless_selected(context)
        run = self.mirror_run
        selection = self.guarded(context, run.resolve_tags)
        pairs = [list(p) for p in run.pairs]
        for name, gone in selection.removed.items():
            self.log.info("%s left out %d tags: %s", name, len(gone), ", ".join(gone[:50]))
        self.log.info("[%s] mirrors %d tags: %s", self.section, len(pairs), ", ".join(p[0] for p in pairs))
        return pairs


class PullImageOperator(MirrorBaseOperator):
    """HEAD source and target; plan the copy (verified manifests) unless the target is up to date, and
    stage it (the docker engine pulls). When the source's pull limit cannot pay for the manifests (or it
    answers 429), the task defers until the window has freed pulls, then plans again."""

    def execute(self, context: Any, known: dict | None = None) -> dict:
        self.skip_unless_selected(context)
        force, dry_run, _ = self.run_params(context)
        self.known_manifests = mirror.manifests_from_xcom(known)

        def work() -> dict:
            run = self.mirror_run
            if self.item and self.item[1] is None:  # planning could not list this section's tags: list them here
                run.resolve_tags()
                context["ti"].xcom_push(key="pairs", value=[list(p) for p in run.pairs])
            try:
                pulled = run.plan(force=force, dry_run=dry_run)
            except PullsShort as short:
                self.wait_for_pulls(f"{short}{config_hint(short)}", short.wait, short.fetched)
            except RegistryError as exc:
                if exc.status != 429:
                    raise
                self.wait_for_pulls(f"{exc}", exc.retry_after or RETRY_429, getattr(exc, "fetched", {}))
            if not dry_run:
                run.stage(pulled)
            for plan in pulled.plans:
                self.log.info(mirror.describe(plan))
            return pulled.to_xcom()

        return self.guarded(context, work)

    def resume(self, context: Any, event: Any = None, known: dict | None = None) -> dict:
        """Back from waiting for pulls: plan again (HEADs are free; manifests already paid for come along)."""
        return self.execute(context, known=known)

    def wait_for_pulls(self, why: str, seconds: float, fetched: dict[str, tuple[str, bytes]]) -> NoReturn:
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        self.log.warning("[%s] %s: waiting until %s UTC (%.0fs), deferred: the task resumes by itself",
                         self.section, why, until.strftime("%Y-%m-%d %H:%M:%S"), seconds)
        self.defer(trigger=DateTimeTrigger(moment=until), method_name="resume",
                   kwargs={"known": mirror.manifests_to_xcom(fetched)})


class TagImageOperator(MirrorBaseOperator):
    """The target references of the images to copy (the docker engine tags them; no network otherwise)."""

    def execute(self, context: Any) -> list[str]:
        self.skip_unless_selected(context)
        pulled = self.skip_unless_copying(context)
        for plan in pulled.plans:
            if plan.changed:
                self.log.info("%s -> %s", plan.source, plan.target)
        return self.guarded(context, lambda: self.mirror_run.tag(pulled))


class EnsureRepositoryOperator(MirrorBaseOperator):
    """Make the target repository ready for the push, with the configured settings (existing ones are
    fine; differences are reported)."""

    def execute(self, context: Any) -> dict:
        self.skip_unless_selected(context)
        self.skip_unless_copying(context)
        outcome = self.guarded(context, lambda: self.mirror_run.ensure())
        state = "created" if outcome.created else outcome.note or "already exists"
        self.log.info("repository %s: %s", outcome.repository, state)
        for difference in outcome.differences:
            self.log.warning("repository %s differs from config.ini: %s", outcome.repository, difference)
        return outcome.to_dict()


class PushImageOperator(MirrorBaseOperator):
    """Copy the planned blobs and manifests, the tag last."""

    def blob_locations(self) -> Callable[[], BlobLocations] | None:
        return lambda: fleet_locations(self.tracking_url(), self.spec.transfer.target_uploads, self.log.info)

    def execute(self, context: Any) -> list[dict]:
        self.skip_unless_selected(context)
        pulled = self.skip_unless_copying(context)
        pushed = Pushed()

        def work() -> list[dict]:
            self.mirror_run.transfer(pulled, pushed)
            if pushed.applied:  # ACR's locks, now the repository exists
                self.log.info("repository settings: %s", pushed.applied)
            return pushed.to_xcom()

        try:
            return self.guarded(context, work)
        except Exception:
            context["ti"].xcom_push(key="partial", value=pushed.to_xcom())  # record keeps tag 1 if tag 2 failed
            raise


class RecordMirrorOperator(MirrorBaseOperator):
    """Always runs: one history row per image, the state rows, and an Asset event per new digest."""

    def __init__(self, *, alias: str | None = None, **kwargs: Any):
        """:param alias: the AssetAlias the events go through (default: ``dmi-mirror-<target repository>``)"""
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.alias_name = alias or f"dmi-mirror-{self.spec.target.repository}"
        self.outlets = [AssetAlias(self.alias_name)]

    def execute(self, context: Any) -> list[dict]:
        self.skip_unless_selected(context)
        if self.item and self.item[1] is None and self.listed is None:  # its tags could not even be listed
            raise AirflowFailException(f"section {self.section!r}: "
                                       f"{self.first_error(context) or 'its tags could not be listed'}")
        pushed = self.sibling(context, self.push_task_id) or self.sibling(context, self.push_task_id, "partial")
        pulled, run = self.pulled(context), self.run_info(context)
        pushed = Pushed.from_xcom(pushed)
        outcomes = self.mirror_run.outcomes(run, pulled, pushed, None)
        if any(o.status == "failed" for o in outcomes):  # only then ask each task for the error it left
            outcomes = self.mirror_run.outcomes(run, pulled, pushed, self.first_error(context))
        for outcome in outcomes:
            self.log.info(mirror.log_line(outcome))
        store = self.tracking_store()
        try:
            try:
                store.record_many(outcomes)  # one transaction: one busy_timeout wait at most when it is locked
            except TrackingError as exc:
                # Locked or unreachable: Airflow's retries (one for DMI's record tasks) may find it back.
                line = f"section {self.section!r}: history not recorded: {redact(str(exc))}"
                raise (AirflowException if exc.retryable else AirflowFailException)(line) from None
            prune_daily(store, self.log)
        finally:
            store.close()
        events = context["outlet_events"][AssetAlias(self.alias_name)]
        for uri, extra in mirror.asset_events(outcomes):
            events.add(Asset(uri), extra=extra)
        failure = mirror.failure(outcomes)
        if failure:  # recorded; now fail, so that the run (whose leaves are the record tasks) shows it
            raise AirflowFailException(failure)
        return [{"target": o.target, "status": o.status, "digest": o.target_digest} for o in outcomes]

    def first_error(self, context: Any) -> str | None:
        """The error the first failed task of the group left, in pipeline order (tasks of this group only,
        when the DAG chains groups)."""
        group = self.task_id.rpartition(".")[0]
        middle = sorted(t for t in self.get_flat_relative_ids(upstream=True) - {self.pull_task_id, self.push_task_id}
                        if t.rpartition(".")[0] == group)
        for task_id in (self.pull_task_id, *middle, self.push_task_id):
            error = self.sibling(context, task_id, "error")
            if error:
                return error
        return None

    @staticmethod
    def run_info(context: Any) -> mirror.RunInfo:
        run = context.get("dag_run")
        dag_id = context["dag"].dag_id if context.get("dag") else getattr(run, "dag_id", "")
        return mirror.RunInfo(dag_id, context.get("run_id") or "",
                              context.get("logical_date") or (run.logical_date if run else None),
                              getattr(run, "start_date", None), datetime.now(UTC))


def prune_daily(store: TrackingStore, log: Any) -> None:
    """The tracking tables that only grow, pruned at most once a day per database (README, "Retention"); a help,
    never the task's failure."""
    try:
        done = store.prune_daily()
    except Exception as exc:
        log.warning("tracking tables not pruned: %s", redact(f"{type(exc).__name__}: {exc}"))
        return
    if done:
        log.info("pruned the tracking tables: %s", ", ".join(f"{n} rows of {t}" for t, n in done.items()))
