"""The first task of a run: one per lane (a DAG's sections that share a source pool). Airflow glue around
dmi_provider.planner: the run's params in, the items to copy out (XCom), history rows for the rest."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.log import redact

from dmi_provider.engines import RunHooks
from dmi_provider.hooks.connections import tracking_url
from dmi_provider.operators.mirror import MirrorBaseOperator, RecordMirrorOperator, prune_daily
from dmi_provider.pipeline import pull_ledger
from dmi_provider.planner import PLAN_PARALLEL, Item, SpecBook, all_items, plan_sections
from dmi_provider.registry.pool import SharedClients
from dmi_provider.registry.referrers import TagListings
from dmi_provider.spec import MirrorSpec
from dmi_provider.tracking.outcome import MirrorOutcome
from dmi_provider.tracking.store import TrackingError, TrackingStore


class TrackingUrls:
    """Each section's tracking database, its connection looked up once per task; one store per database."""

    def __init__(self) -> None:
        self._urls: dict[tuple[str | None, str | None], str] = {}
        self._stores: dict[str, TrackingStore] = {}
        self._lock = threading.Lock()  # sections are planned in threads

    def url(self, spec: MirrorSpec) -> str:
        key = (spec.tracking_conn_id, spec.env.db_path)
        with self._lock:
            if key not in self._urls:
                self._urls[key] = tracking_url(*key)
            return self._urls[key]

    def store(self, url: str) -> TrackingStore:
        with self._lock:
            if url not in self._stores:
                self._stores[url] = TrackingStore(url)
            return self._stores[url]

    def last_good(self, spec: MirrorSpec) -> Callable[[str], dict | None]:
        return lambda target: self.store(self.url(spec)).last_good(target)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()


def max_map_length() -> int:
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


class PlanMirrorsOperator(BaseOperator):
    """The first step of a run for a lane of sections (a DAG's sections that share a source pool): lists tags,
    HEADs source and target for every section at once, records what is unchanged (one transaction per
    tracking database) and returns only the items `[section, source tag, target tag]` that need copying: the
    lane's task group is mapped over them, so an unchanged image costs no task. No pull is spent.

    :param book: the config file's sections (``dmi_provider.planner.SpecBook``)
    :param lane: which of the DAG's sections: those of ``dmi_provider.planner.lane_of(spec) == lane``
    :param parallel: sections planned at a time
    """

    ui_color = "#dbe9f6"

    def __init__(self, *, book: SpecBook, lane: str, parallel: int = PLAN_PARALLEL, **kwargs: Any):
        super().__init__(**kwargs)
        self.book = book
        self.lane = lane
        self.parallel = parallel

    def execute(self, context: Any) -> list[Item]:
        force, dry_run, sections = MirrorBaseOperator.run_params(context)
        specs = [s for s in self.book.lane(self.dag_id, self.lane) if not sections or s.section in sections]
        urls = TrackingUrls()
        tag_lists = TagListings()  # one listing per source repository
        for spec in specs:  # connections looked up once, before the threads
            urls.url(spec)
        clients = SharedClients()  # one client and token per host and login for the lane
        try:
            plans = plan_sections(specs, lambda spec: RunHooks(say=self.log.info, history=urls.last_good(spec),
                                                               ledger=pull_ledger(lambda: urls.url(spec)),
                                                               tag_lists=tag_lists, clients=clients),
                                  force=force, dry_run=dry_run, parallel=self.parallel,
                                  redact=lambda text: str(redact(text)))
        finally:
            clients.close()
        info = RecordMirrorOperator.run_info(context)
        settled: dict[str, list[MirrorOutcome]] = {}
        for plan in plans:
            for note in plan.notes:
                self.log.info("[%s] %s", plan.spec.section, note)
            if plan.error:
                self.log.warning("[%s] planning failed, its copy steps try again: %s", plan.spec.section, plan.error)
            settled.setdefault(urls.url(plan.spec), []).extend(plan.settled(info, force, dry_run))
        try:
            for url, outcomes in settled.items():
                try:
                    urls.store(url).record_many(outcomes)
                except TrackingError as exc:  # the copies still go on; their record tasks try the database again
                    self.log.warning("%d unchanged image(s): history not recorded: %s", len(outcomes),
                                     redact(str(exc)))
                    continue
                prune_daily(urls.store(url), self.log)  # a warm run has no record task: the planner prunes too
        finally:
            urls.close()
        items = all_items(plans, force, dry_run)
        most = max_map_length()
        if len(items) > most:  # Airflow refuses to map over more: copy these now, the rest next run
            self.log.warning("%d images to copy, more than Airflow maps at once ([core] max_map_length = %d): "
                             "%d are left for the next run (raise max_map_length to copy all in one)",
                             len(items), most, len(items) - most)
            items = items[:most]
        unchanged = sum(len(v) for v in settled.values())
        self.log.info("%d sections, %d images settled by HEADs (%s), %d to copy", len(specs), unchanged,
                      "dry run" if dry_run else "unchanged", len(items))
        return items
