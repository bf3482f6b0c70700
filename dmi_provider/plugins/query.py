"""What the "Image mirror" pages show: the reads (the tracking databases, read-only; Airflow's task instances
and auth manager) and their shaping into the data each template draws. Blocking: the routes call these in a
thread. Rows are filtered, in SQL, to the DAGs the caller may read."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.core_api.security import BaseUser
from fastapi import Query

from dmi_provider.config import ConfigError, load_config, read_environment
from dmi_provider.hooks.connections import DEFAULT_TRACKING_CONN_ID, tracking_url
from dmi_provider.planner import lane_of
from dmi_provider.plugins.charts import (
    blobs_geometry,
    budget_geometry,
    runs_geometry,
    strip_geometry,
    timeline_geometry,
)
from dmi_provider.plugins.pages import Column, Paging, table
from dmi_provider.tracking.store import STATUSES, TrackingStore

TRACKING_CONN_ID = os.environ.get("DMI_TRACKING_CONN_ID", DEFAULT_TRACKING_CONN_ID)
RECENT_RUNS = 20  # squares in each image's strip on the state page
STORES_KEPT = 16  # tracking databases whose store (and connection pool) the api-server keeps open
Page = Annotated[int, Query(ge=1)]
Limit = Annotated[int, Query(ge=1, le=5000)]


@dataclass(frozen=True)
class StateAsk:
    """The state page's query string."""
    section: str | None = None
    sort: str | None = None
    dir: str = "asc"
    page: Page = 1
    triggered: str | None = None  # "dag_id|run_id|section" after Mirror now


@dataclass(frozen=True)
class HistoryAsk:
    """The history page's query string (filters, order, page)."""
    image: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    dag_id: str | None = None
    sort: str | None = None
    dir: str = "desc"
    page: Page = 1
    limit: Limit = 2000


# -- the deployed config.ini ----------------------------------------------------------------------------
def config_sections() -> tuple:
    """The sections of the deployed config.ini; the file is read again only when it changes, not on every
    page."""
    from airflow.configuration import conf

    path = os.environ.get("DMI_CONFIG") or os.path.join(conf.get("core", "dags_folder"), "config.ini")
    try:
        return _sections_of(path, os.stat(path).st_mtime_ns)
    except OSError:
        return ()


@functools.lru_cache(maxsize=4)
def _sections_of(path: str, _stamp: int) -> tuple:
    try:
        return load_config(path).sections
    except ConfigError:
        return ()


# -- Airflow: who may see and do what, task instances ---------------------------------------------------
def readable_dags(user: BaseUser) -> set[str]:
    """The DAGs this user may read, as Airflow's auth manager says: rows of other DAGs are not shown."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def triggerable(user: BaseUser, dag_ids: set[str]) -> set[str]:
    """Of these DAGs, those the user may start runs of (Airflow's auth manager: POST on the DAG's runs)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    return {d for d in dag_ids if manager.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                            details=DagDetails(id=d), user=user)}


def waiting_for_pulls(dag_ids: set[str]) -> dict[str, int]:
    """Pull tasks deferred right now (waiting for a source's pulls), by source registry, in these DAGs. The
    source of a task comes from the deployed config.ini (its task group)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    sources = {(s.dag_id, f"{lane_of(s)}.pull"): s.source.registry for s in config_sections()}
    with create_session() as session:
        found = session.execute(select(TaskInstance.dag_id, TaskInstance.task_id).where(
            TaskInstance.state == TaskInstanceState.DEFERRED, TaskInstance.task_id.like("%.pull"),
            TaskInstance.dag_id.in_(list(dag_ids)))).all()
    counts: dict[str, int] = {}
    for dag_id, task_id in found:
        registry = sources.get((dag_id, task_id))
        if registry:
            counts[registry] = counts.get(registry, 0) + 1
    return counts


_STEPS = {"pull": 1, "tag": 2, "ensure_repository": 3, "push": 4, "record": 5}  # plan_<lane>: 0


FAILING = ("failed", "rejected", "quarantined")  # a state to look at: the image is not (newly) published

def failed_task_links(rows: list[dict]) -> dict[int, str]:
    """For failed history rows: the UI address of the task that failed (its log), from Airflow's own task
    instances (the section's source pool names its lane: `plan_<lane>` and the group `<lane>`, whose instances
    are named `[section] tag`)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import or_, select

    failed = [r for r in rows if r["status"] in FAILING and r.get("dag_id") and r.get("run_id")]
    if not failed:
        return {}
    runs = {(r["dag_id"], r["run_id"]) for r in failed}
    with create_session() as session:
        # rendered_map_index is a hybrid property, which select()'s typed overloads do not take.
        columns: list[Any] = [TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index,
                              TaskInstance.rendered_map_index]
        found = session.execute(select(*columns).where(
            or_(*[(TaskInstance.dag_id == d) & (TaskInstance.run_id == r) for d, r in runs]),
            TaskInstance.state == TaskInstanceState.FAILED)).all()
    lanes = {(s.dag_id, s.section): lane_of(s) for s in config_sections()}
    links: dict[int, str] = {}
    for row in failed:
        group = lanes.get((row["dag_id"], row["section"]))
        if group is None:
            continue
        tag = row["source"].rsplit(":", 1)[-1] if ":" in row["source"].rsplit("/", 1)[-1] else ""
        name, listing = f"[{row['section']}] {tag}", f"[{row['section']}] (tags)"
        mine = [f for f in found if f.dag_id == row["dag_id"] and f.run_id == row["run_id"]
                and ((f.task_id.startswith(f"{group}.") and f.rendered_map_index in (name, listing))
                     or f.task_id == f"plan_{group}")]
        # The step that failed first (record fails too, to mark the run), of this tag.
        mine.sort(key=lambda f: (f.rendered_map_index != name, _STEPS.get(f.task_id.rsplit(".", 1)[-1], 0)))
        best = mine[0] if mine else None
        if best is not None:
            where = f"../dags/{quote(best.dag_id)}/runs/{quote(best.run_id, safe='')}/tasks/{quote(best.task_id)}"
            links[row["id"]] = where + (f"/mapped/{best.map_index}" if best.map_index >= 0 else "")
    return links


# -- the tracking databases -----------------------------------------------------------------------------
def tracking_urls() -> list[str]:
    """Every tracking database the deployment writes to, as the api-server sees the connections (sections
    may name their own)."""
    db_path = read_environment(os.environ, []).db_path
    conn_ids = {TRACKING_CONN_ID, *(spec.tracking_conn_id for spec in config_sections())}
    return sorted({tracking_url(conn_id, db_path, server=True) for conn_id in conn_ids})


_stores: OrderedDict[str, TrackingStore] = OrderedDict()  # least recently used first
_stores_lock = threading.Lock()  # the routes run in a thread pool


def _store(url: str) -> TrackingStore:
    """One read-only store, and so one connection pool, per tracking database for the api-server's life
    (a page asks each database several things). Beyond STORES_KEPT the least recently used one is closed:
    its pool's connections would otherwise stay open to a database no page reads any more."""
    evicted = []
    with _stores_lock:
        store = _stores.pop(url, None) or TrackingStore(url, read_only=True)
        _stores[url] = store
        while len(_stores) > STORES_KEPT:
            evicted.append(_stores.popitem(last=False)[1])
    for old in evicted:  # a page still reading one finishes: a disposed engine opens a new pool if asked
        old.close()
    return store


def stores() -> list[TrackingStore]:
    return [_store(url) for url in tracking_urls()]


_ORDER = {"state": (lambda r: r["target"], False), "timeline": (lambda r: r["first_seen"], False),
          "budget": (lambda r: r["finished_at"], False), "runs": (lambda r: r["finished_at"], False),
          "history": (lambda r: (r["finished_at"], r["id"]), True)}


def rows(dag_ids: set[str], method: str, **kwargs: Any) -> list[dict]:
    """Rows of every tracking database (TrackingStore.<method>), of these DAGs only, in one order."""
    found: list[dict] = []
    for store in stores():
        found += getattr(store, method)(dag_ids=dag_ids, **kwargs)
    key, reverse = _ORDER[method]
    found.sort(key=key, reverse=reverse)
    limit = kwargs.get("limit")
    if not isinstance(limit, int):
        return found
    return found[-limit:] if method == "runs" else found[:limit]


def overview(dag_ids: set[str]) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Each target's latest runs, and the totals, of every tracking database."""
    recent: dict[str, list[dict]] = {}
    totals = {"bytes": 0, "copies": 0}
    for store in stores():
        for target, runs in store.recent(dag_ids=dag_ids, per_target=RECENT_RUNS).items():
            recent[target] = sorted(recent.get(target, []) + runs, key=lambda r: r["finished_at"])[-RECENT_RUNS:]
        for key, value in store.totals(dag_ids=dag_ids).items():
            totals[key] += value
    return recent, totals


# -- the pages' data ------------------------------------------------------------------------------------
def started(triggered: str | None) -> dict | None:
    """After 'Mirror now' (?triggered=dag_id|run_id|section): which run started."""
    if not triggered or "|" not in triggered:
        return None
    dag_id, run_id, section = [*triggered.split("|"), ""][:3]
    return {"dag_id": dag_id, "run_id": run_id, "section": section}


def state_view(user: BaseUser, ask: StateAsk) -> dict:
    dag_ids = readable_dags(user)
    found = rows(dag_ids, "state", section=ask.section or None)
    recent, totals = overview(dag_ids)
    week_ago = datetime.now(UTC) - timedelta(days=7)
    budgets: dict[str, list[dict]] = {}
    waiting: dict[str, int] = {}
    if not ask.section:
        points = rows(dag_ids, "budget")
        waiting = waiting_for_pulls(dag_ids) if points else {}
        for point in points:
            budgets.setdefault(point["registry"], []).append(point)
    params = {"section": ask.section or "", "sort": ask.sort or "", "dir": ask.dir}
    columns = [Column("Target", lambda r: r["target"], "target"), Column("Section", lambda r: r["section"], "section"),
               Column("Digest"), Column("Status", lambda r: r["last_status"], "status"),
               Column(f"Last {RECENT_RUNS} runs", lambda r: sum(x["status"] in FAILING
                                                                for x in recent.get(r["target"], ())), "failures"),
               Column("Last changed (UTC)", lambda r: r["last_changed"], "changed"),
               Column("Last run", lambda r: r["last_checked"], "checked"), Column("")]
    shown = table(columns, found, "No image has been mirrored yet." if not ask.section else
                  "No image of this section has been mirrored yet.", Paging(params, ask.sort, ask.dir, ask.page))
    return {
        "title": "Image mirror: current state" + (f" of section {ask.section!r}" if ask.section else ""),
        "started": started(ask.triggered), "section": ask.section or "", "table": shown,
        "cards": {"images": sum(1 for r in found if r["last_digest"]),
                  "failing": sum(1 for r in found if r["last_status"] in FAILING),
                  "changed": sum(1 for r in found if r["last_changed"] and r["last_changed"] >= week_ago),
                  "bytes": totals["bytes"]},
        "budgets": [(registry, points[-1], waiting.get(registry, 0), budget_geometry(registry, points))
                    for registry, points in sorted(budgets.items())],
        "strips": {r["target"]: strip_geometry(recent[r["target"]]) for r in shown.rows if recent.get(r["target"])},
        "allowed": triggerable(user, {r["dag_id"] for r in found}),
        "back": "./?" + urlencode({k: v for k, v in {**params, "page": ask.page}.items() if v}),
    }


def history_view(user: BaseUser, ask: HistoryAsk) -> dict:
    dag_ids = readable_dags(user)
    found = rows(dag_ids, "history", image=ask.image or None, status=ask.status or None, dag_id=ask.dag_id or None,
                 since=date(ask.since), until=date(ask.until, end=True), limit=ask.limit)
    columns = [Column("Finished (UTC)", lambda r: (r["finished_at"], r["id"]), "finished"),
               Column("Status", lambda r: r["status"], "status"), Column("Target", lambda r: r["target"], "target"),
               Column("Source digest"), Column("Target digest"),
               Column("Bytes", lambda r: r["bytes_transferred"], "bytes"), Column("Blobs c/m/s"), Column("DAG run"),
               Column("Error")]
    params = {"image": ask.image or "", "status": ask.status or "", "since": ask.since or "",
              "until": ask.until or "", "dag_id": ask.dag_id or "", "sort": ask.sort or "", "dir": ask.dir}
    return {
        "title": f"Image mirror: history of {ask.dag_id}" if ask.dag_id else "Image mirror: history",
        "ask": ask, "statuses": STATUSES,
        "chart": _runs_chart(dag_ids, ask.dag_id),
        "table": table(columns, found, "No history matches these filters.",
                       Paging(params, ask.sort or "finished", ask.dir, ask.page, path="history")),
        "links": failed_task_links([r for r in found if r["status"] in FAILING][:500]),
    }


def _runs_chart(dag_ids: set[str], dag_id: str | None) -> dict | None:
    """The DAG tab's chart: that DAG's latest runs."""
    runs = rows(dag_ids, "runs", dag_id=dag_id, limit=60) if dag_id else []
    return runs_geometry(runs) if runs else None


def image_view(user: BaseUser, target: str, triggered: str | None) -> dict:
    dag_ids = readable_dags(user)
    history = rows(dag_ids, "history", target=target, limit=1000)
    state = rows(dag_ids, "state", target=target)
    allowed = triggerable(user, {r["dag_id"] for r in state})
    brought: dict[str, dict] = {}
    for r in reversed(history):  # oldest first: the first run that wrote or found each digest
        if r["target_digest"] and r["status"] in ("copied", "unchanged"):
            brought.setdefault(r["target_digest"], r)
    lanes = [{**t, "run_id": brought[t["digest"]]["run_id"] if t["digest"] in brought else "",
              "dag_id": brought[t["digest"]]["dag_id"] if t["digest"] in brought else ""}
             for t in rows(dag_ids, "timeline", target=target)]
    latest = history[:50]
    actionable = state[0] if state and state[0]["dag_id"] in allowed and state[0].get("section") else None
    return {
        "title": f"Image mirror: {target}", "started": started(triggered), "row": actionable, "allowed": allowed,
        "back": "image?" + urlencode({"target": target}),
        "timeline": timeline_geometry(lanes, datetime.now(UTC)) if lanes else None,
        "digests": table([Column(t) for t in ("Digest", "First seen (UTC)", "Brought by", "Last seen", "Runs")],
                         lanes, "This image has no digest on record.", Paging(per=1000)),
        "blobs": blobs_geometry(latest[::-1]) if latest else None,  # oldest first
        "runs": table([Column(t) for t in ("Finished (UTC)", "Status", "Target digest", "Bytes", "Blobs c/m/s",
                                           "DAG run", "Error")], latest, "No runs on record.", Paging(per=50)),
        "links": failed_task_links(latest),
    }


def date(text: str | None, end: bool = False) -> datetime | None:
    """A filter's date (or time); a bare day as `until` means up to its end."""
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        return None
    day = day.replace(tzinfo=day.tzinfo or UTC)
    return day.replace(hour=23, minute=59, second=59) if end and len(text) == 10 else day
