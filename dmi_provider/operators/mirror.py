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

from dmi_provider import backends, mirror
from dmi_provider.config import KEYS, AcrSettings, EcrSettings, Environment, GarSettings, current_environment
from dmi_provider.engines import Engine
from dmi_provider.errors import DmiError, is_retryable
from dmi_provider.hints import config_hint
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.job import Job
from dmi_provider.registry.budget import PullsShort
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.locations import BlobLocations
from dmi_provider.registry.referrers import ReferrerFilter
from dmi_provider.tags import TagFilter, split_pin
from dmi_provider.targets import Target, make_target
from dmi_provider.tracking.store import TrackingStore

TagPairs = Sequence[str | Sequence[str]]
RETRY_429 = 60.0  # seconds to wait after a 429 that says nothing of when to come back
DEFAULT_TARGET, DEFAULT_ENGINE, DEFAULT_SOURCE = KEYS["target"].value, KEYS["engine"].value, KEYS["source"].value


class MirrorBaseOperator(BaseOperator):
    """What the five operators share: which image, which tags, where it goes, and the run's params.

    :param source: the source repository with its registry, e.g. ``docker.io/istio/proxyv2`` (templated)
    :param tags: tags to mirror (``1.7.0``, a pin ``1.7.0@sha256:…``), or ``(source tag, target tag)`` pairs
        (templated: a mapped task group passes each instance its pair)
    :param target_repository: the repository path at the target, e.g. ``istio/proxyv2`` (templated)
    :param target: the kind of target: ``ecr``, ``gar``, ``acr`` or ``registry`` (see
        ``dmi_provider.targets.TARGETS``)
    :param target_registry: ``host[:port]`` to push to; required for ``registry``, replaces a cloud's
        registry host (the ECR token's, ``LOCATION-docker.pkg.dev``, ``NAME.azurecr.io``) (templated)
    :param platforms: ``os/arch[/variant]`` to keep of a multi-arch image (default: all)
    :param insecure_registries: hosts allowed over plain HTTP
    :param source_conn_id: connection with the source registry's login (default: anonymous); for a cloud
        source, that cloud's connection (default: its default connection)
    :param source_type: ``registry``, or a cloud's registry as the source: ``ecr``, ``gar``, ``acr``
    :param target_conn_id: connection with the login of a ``registry`` target
    :param aws_conn_id: AWS connection for ECR
    :param engine: how bytes move: ``registry`` (no daemon) or ``docker`` (see ``dmi_provider.engines.ENGINES``)
    :param ecr_settings: settings of the ECR repository when ensure_repository creates it
    :param gar_settings: GAR: connection, location, project, repository and its settings
        (``dmi_provider.config.GarSettings``)
    :param acr_settings: ACR: connection, registry name and repository locks (``dmi_provider.config.AcrSettings``)
    :param upload_chunk_size: bytes per chunked upload (PATCH); 0 one PUT per blob; None the target's default
    :param section: the config section, for messages and the history (default: the task id)
    :param docker_url: the Docker daemon of ``engine = docker``
    :param docker_conn_id: Docker connection the daemon logs in with
    :param keep_local_images: ``engine = docker``: keep the images on the daemon after the push
    :param tracking_conn_id: connection of the tracking database (default ``dmi_tracking``, else SQLite)
    :param environment: the legacy variables (AWS_ACCOUNT, AWS_DEFAULT_REGION, DB_PATH) as parsed with the
        config; default: read and validated from this process's environment
    :param source_proxy: proxy URL for the source registry (default: the environment's HTTPS_PROXY etc.)
    :param source_ca_bundle: PEM file of a CA to trust for the source registry, besides the system's
    :param target_proxy: proxy URL for the target registry
    :param target_ca_bundle: PEM file of a CA to trust for the target registry
    :param referrers: which signatures, SBOMs and attestations travel with the image
        (``dmi_provider.registry.referrers.ReferrerFilter``; default: all)
    :param pull_reserve: percent of a source's pull limit never spent (the pull task defers instead)
    :param tag_filter: ``tags-*`` filters (``dmi_provider.tags.TagFilter``); used by ResolveTagsOperator
    :param pull_task_id: the task id of the group's pull task (plans come from its XCom)
    :param push_task_id: the task id of the group's push task (results come from its XCom)
    """

    # tags is templated so that a mapped task group can hand each instance its (source, target) pair.
    template_fields: Sequence[str] = ("source", "tags", "target_repository", "target_registry")
    ui_color = "#e8f1fb"

    def __init__(self, *, source: str, tags: TagPairs, target_repository: str, target: str = DEFAULT_TARGET,
                 target_registry: str | None = None, platforms: Sequence[str] = (),
                 insecure_registries: Sequence[str] = (), source_conn_id: str | None = None,
                 target_conn_id: str | None = None, aws_conn_id: str | None = "aws_default",
                 engine: str = DEFAULT_ENGINE, ecr_settings: EcrSettings | None = None, section: str | None = None,
                 docker_url: str | None = None, docker_conn_id: str | None = None, keep_local_images: bool = False,
                 tracking_conn_id: str | None = None, environment: Environment | None = None,
                 tag_filter: TagFilter | None = None, source_proxy: str | None = None,
                 source_ca_bundle: str | None = None, target_proxy: str | None = None,
                 target_ca_bundle: str | None = None, pull_reserve: float = 10.0,
                 referrers: ReferrerFilter | None = None, source_type: str = DEFAULT_SOURCE,
                 gar_settings: GarSettings | None = None, acr_settings: AcrSettings | None = None,
                 upload_chunk_size: int | None = None, target_uploads: int = KEYS["target-uploads"].value,
                 pull_task_id: str = "pull", push_task_id: str = "push", **kwargs: Any):
        super().__init__(**kwargs)
        self.source = source
        self.tags = tags
        self.target_repository = target_repository
        self.target = target
        self.target_registry = target_registry
        self.platforms = tuple(platforms)
        self.insecure_registries = tuple(insecure_registries)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.aws_conn_id = aws_conn_id
        self.engine = engine
        self.ecr_settings = ecr_settings or EcrSettings()
        self.section = section or self.task_id
        self.docker_url = docker_url
        self.docker_conn_id = docker_conn_id
        self.keep_local_images = keep_local_images
        self.tracking_conn_id = tracking_conn_id
        self.environment = environment
        self.tag_filter = tag_filter or TagFilter()
        self.source_proxy, self.source_ca_bundle = source_proxy, source_ca_bundle
        self.target_proxy, self.target_ca_bundle = target_proxy, target_ca_bundle
        self.pull_reserve = pull_reserve
        self.referrers = referrers or ReferrerFilter()
        self.source_type = source_type
        self.gar_settings = gar_settings or GarSettings()
        self.acr_settings = acr_settings or AcrSettings()
        self.upload_chunk_size = upload_chunk_size
        self.target_uploads = target_uploads
        self.pull_task_id = pull_task_id
        self.push_task_id = push_task_id

    # -- what this group mirrors, and with what (built at run time, after templates) ----------------
    @cached_property
    def job(self) -> Job:
        pairs = tuple((t, split_pin(t)[0] or t) if isinstance(t, str) else (t[0], t[1]) for t in self.tags)
        return Job(section=self.section, source=self.source, pairs=pairs,
                   target_repository=self.target_repository, target=self.target, target_registry=self.target_registry,
                   target_conn_id=self.target_conn_id, aws_conn_id=self.aws_conn_id, ecr=self.ecr_settings,
                   source_conn_id=self.source_conn_id, platforms=self.platforms,
                   insecure_registries=self.insecure_registries, engine=self.engine, docker_url=self.docker_url,
                   docker_conn_id=self.docker_conn_id, keep_local_images=self.keep_local_images,
                   tracking_conn_id=self.tracking_conn_id, env=self.environment or current_environment(),
                   tag_filter=self.tag_filter, source_proxy=self.source_proxy,
                   source_ca_bundle=self.source_ca_bundle, target_proxy=self.target_proxy,
                   target_ca_bundle=self.target_ca_bundle, pull_reserve=self.pull_reserve, referrers=self.referrers,
                   source_type=self.source_type, gar=self.gar_settings, acr=self.acr_settings,
                   upload_chunk_size=self.upload_chunk_size)

    @cached_property
    def target_backend(self) -> Target:
        return make_target(self.job)

    @cached_property
    def engine_backend(self) -> Engine:
        return backends.engine_for(self.job, self.target_backend, self.log.info, history=self.last_good,
                                   known=self.__dict__.get("known_manifests"),
                                   ledger=backends.pull_ledger(self.tracking_url), locations=self.blob_locations())

    def blob_locations(self) -> Callable[[], BlobLocations] | None:
        """Where blobs sit; the push task shares them with the fleet (the others write no blob)."""
        return None

    def tracking_url(self) -> str:
        return tracking_url(self.tracking_conn_id, self.job.env.db_path)

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

    def pulled(self, context: Any) -> dict | None:
        return self.sibling(context, self.pull_task_id)

    @staticmethod
    def sibling(context: Any, task_id: str, key: str = "return_value") -> Any:
        """An XCom of another task of this group: of the same tag when the group is mapped over tags."""
        ti = context["ti"]
        index = getattr(ti, "map_index", -1)
        if index is not None and index >= 0:
            return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index)
        return ti.xcom_pull(task_ids=task_id, key=key)

    def skip_unless_copying(self, context: Any) -> dict:
        pulled = self.pulled(context)
        if pulled is None:
            raise AirflowSkipException("pull produced no plan")
        if pulled["dry_run"]:
            raise AirflowSkipException("dry run: nothing is written at the target")
        if not pulled["changed"]:
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
            if "engine_backend" in self.__dict__:
                self.engine_backend.close()
                del self.__dict__["engine_backend"]


class ResolveTagsOperator(MirrorBaseOperator):
    """The tags a section with ``tags-*`` filters mirrors in this run: one listing of the source's tags
    (not a pull), filtered; returns the (source tag, target tag) pairs the group is mapped over."""

    def execute(self, context: Any) -> list[list[str]]:
        self.skip_unless_selected(context)
        pairs, selection = self.guarded(context, lambda: backends.resolve_tags(self.job))
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
            try:
                host, plans = backends.plan(self.job, self.target_backend, self.engine_backend, force=force,
                                            dry_run=dry_run)
            except PullsShort as short:
                self.wait_for_pulls(f"{short}", short.wait, short.fetched)
            except RegistryError as exc:
                if exc.status != 429:
                    raise
                self.wait_for_pulls(f"{exc}", exc.retry_after or RETRY_429, getattr(exc, "fetched", {}))
            if not dry_run:
                self.engine_backend.stage(plans)
            for plan in plans:
                self.log.info(mirror.describe(plan))
            return mirror.pulled(plans, host, dry_run)

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
        plans = [p for p in mirror.plans_of(self.skip_unless_copying(context)) if p.changed]
        for plan in plans:
            self.log.info("%s -> %s", plan.source, plan.target)
        self.guarded(context, lambda: self.engine_backend.tag(plans))
        return [p.target for p in plans]


class EnsureRepositoryOperator(MirrorBaseOperator):
    """Make the target repository ready for the push, with the configured settings (existing ones are
    fine; differences are reported)."""

    def execute(self, context: Any) -> dict:
        self.skip_unless_selected(context)
        self.skip_unless_copying(context)
        outcome = self.guarded(context, lambda: self.target_backend.ensure_repository(self.target_repository))
        state = "created" if outcome.created else outcome.note or "already exists"
        self.log.info("repository %s: %s", outcome.repository, state)
        for difference in outcome.differences:
            self.log.warning("repository %s differs from config.ini: %s", outcome.repository, difference)
        return outcome.to_dict()


class PushImageOperator(MirrorBaseOperator):
    """Copy the planned blobs and manifests, the tag last."""

    def blob_locations(self) -> Callable[[], BlobLocations] | None:
        return lambda: backends.fleet_locations(self.tracking_url(), self.target_uploads, self.log.info)

    def execute(self, context: Any) -> list[dict]:
        self.skip_unless_selected(context)
        plans = mirror.plans_of(self.skip_unless_copying(context))
        done: list[dict] = []

        def work() -> list[dict]:
            for plan in plans:  # one at a time, so what was written before a failure is known
                done.extend(r.to_dict() for r in self.engine_backend.transfer([plan]))
            applied = self.target_backend.after_push(self.job.target_repository)  # ACR's locks, now it exists
            if applied:
                self.log.info("repository settings: %s", applied)
            return done

        try:
            return self.guarded(context, work)
        except Exception:
            context["ti"].xcom_push(key="partial", value=done)  # record keeps tag 1 copied if tag 2 failed
            raise


class RecordMirrorOperator(MirrorBaseOperator):
    """Always runs: one history row per image, the state rows, and an Asset event per new digest."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.outlets = [AssetAlias(self.alias_name)]

    @property
    def alias_name(self) -> str:
        return f"dmi-mirror-{self.target_repository}"

    def execute(self, context: Any) -> list[dict]:
        self.skip_unless_selected(context)
        pushed = self.sibling(context, self.push_task_id) or self.sibling(context, self.push_task_id, "partial")
        pulled, run = self.pulled(context), self.run_info(context)
        outcomes = mirror.outcomes(self.job, run, pulled, pushed, None)
        if any(o.status == "failed" for o in outcomes):  # only then ask each task for the error it left
            outcomes = mirror.outcomes(self.job, run, pulled, pushed, self.first_error(context))
        store = self.tracking_store()
        try:
            for outcome in outcomes:
                store.record(outcome)
                self.log.info(mirror.log_line(outcome))
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

    def run_info(self, context: Any) -> mirror.RunInfo:
        run = context.get("dag_run")
        return mirror.RunInfo(self.dag_id, context.get("run_id") or "",
                              context.get("logical_date") or (run.logical_date if run else None),
                              getattr(run, "start_date", None), datetime.now(UTC))
