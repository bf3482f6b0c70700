"""The "Image mirror" pages in the Airflow UI: current state, history with filters, one image's timeline.

A FastAPI app mounted by the api-server under /dmi, behind Airflow's own authentication (the
caller's JWT, as a bearer token or the UI's session cookie). Rows are filtered, in SQL, to the DAGs the
caller may read; the tracking databases are only read (nothing is created or migrated here). Pages are
server-rendered HTML and SVG (tables sort and page on the server); one short script follows the light or
dark theme of the Airflow UI around the frame and sends links to Airflow's pages through the UI's router.
"Mirror now" starts a run through Airflow's own REST API as the caller.
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import BaseUser, GetUserDep, requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dmi_provider import listeners
from dmi_provider.config import ConfigError, group_id_for, load_config, read_environment
from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.hooks.connections import DEFAULT_TRACKING_CONN_ID, tracking_url
from dmi_provider.plugins.charts import (
    blob_chart,
    budget_chart,
    budget_headline,
    dag_runs_chart,
    digest_timeline,
    headline,
    human_bytes,
    run_strip,
)
from dmi_provider.plugins.pages import Column, e, table
from dmi_provider.plugins.pages import page as page_html
from dmi_provider.tracking.store import STATUSES, TrackingStore, when

TRACKING_CONN_ID = os.environ.get("DMI_TRACKING_CONN_ID", DEFAULT_TRACKING_CONN_ID)
RECENT_RUNS = 20  # squares in each image's strip on the state page
Page = Annotated[int, Query(ge=1)]
Limit = Annotated[int, Query(ge=1, le=5000)]

app = FastAPI(title="DMI image mirror", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])


def _config_sections() -> tuple:
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


def _config_conn_ids() -> frozenset[str]:
    """The tracking connections the deployed config.ini names (sections may use their own)."""
    return frozenset(spec.tracking_conn_id for spec in _config_sections())


def waiting_for_pulls(user: BaseUser) -> dict[str, int]:
    """Pull tasks deferred right now (waiting for a source's pulls), by source registry, in DAGs the user
    may read. The source of a task comes from the deployed config.ini (its task group)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    sources = {(s.dag_id, f"{s.group_id}.pull"): s.source.registry for s in _config_sections()}
    dag_ids = readable_dags(user)
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


def budget_section(rows: list[dict], waiting: dict[str, int]) -> str:
    """A headline and a chart per source registry that sends rate-limit headers."""
    by_registry: dict[str, list[dict]] = {}
    for row in rows:
        by_registry.setdefault(row["registry"], []).append(row)
    if not by_registry:
        return ""
    parts = [budget_headline(r, points[-1], waiting.get(r, 0)) for r, points in sorted(by_registry.items())]
    parts += [budget_chart(r, points) for r, points in sorted(by_registry.items())]
    return '<section class="dmi-budgets"><h2>Pull limits</h2>' + "".join(parts) + "</section>"


def tracking_urls() -> list[str]:
    """Every tracking database the deployment writes to, as the api-server sees the connections."""
    db_path = read_environment(os.environ, []).db_path
    return sorted({tracking_url(conn_id, db_path, server=True) for conn_id in {TRACKING_CONN_ID,
                                                                               *_config_conn_ids()}})


_ORDER = {"state": (lambda r: r["target"], False), "timeline": (lambda r: r["first_seen"], False),
          "budget": (lambda r: r["finished_at"], False), "runs": (lambda r: r["finished_at"], False),
          "history": (lambda r: (r["finished_at"], r["id"]), True)}


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


@functools.lru_cache(maxsize=16)
def _store(url: str) -> TrackingStore:
    """One read-only store, and so one connection pool, per tracking database for the api-server's life
    (a page asks each database several things)."""
    return TrackingStore(url, read_only=True)


def _stores() -> list[TrackingStore]:
    return [_store(url) for url in tracking_urls()]


def _query(user: BaseUser, method: str, **kwargs: object) -> list[dict]:
    """Rows of every tracking database, read-only (the UI never creates or migrates tables)."""
    kwargs["dag_ids"] = readable_dags(user)
    rows: list[dict] = []
    for store in _stores():
        rows += getattr(store, method)(**kwargs)
    key, reverse = _ORDER[method]
    rows.sort(key=key, reverse=reverse)
    limit = kwargs.get("limit")
    return rows[-int(limit):] if method == "runs" and isinstance(limit, int) else (
        rows[: int(limit)] if isinstance(limit, int) else rows)


def _overview(user: BaseUser) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Each target's latest runs, and the totals, of every tracking database."""
    dag_ids = readable_dags(user)
    recent: dict[str, list[dict]] = {}
    totals = {"bytes": 0, "copies": 0}
    for store in _stores():
        for target, runs in store.recent(dag_ids=dag_ids, per_target=RECENT_RUNS).items():
            recent[target] = sorted(recent.get(target, []) + runs, key=lambda r: r["finished_at"])[-RECENT_RUNS:]
        for key, value in store.totals(dag_ids=dag_ids).items():
            totals[key] += value
    return recent, totals


_STEPS = {"pull": 1, "tag": 2, "ensure_repository": 3, "push": 4, "record": 5}  # tags_<group>: 0


def failed_task_links(rows: list[dict]) -> dict[int, str]:
    """For failed history rows: the UI address of the task that failed (its log), from Airflow's own task
    instances (the row's section names its task group; a mapped group's instance is named by the source tag)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import or_, select

    failed = [r for r in rows if r["status"] == "failed" and r.get("dag_id") and r.get("run_id")]
    if not failed:
        return {}
    runs = {(r["dag_id"], r["run_id"]) for r in failed}
    with create_session() as session:
        found = session.execute(select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id,
                                       TaskInstance.map_index, TaskInstance.rendered_map_index).where(
            or_(*[(TaskInstance.dag_id == d) & (TaskInstance.run_id == r) for d, r in runs]),
            TaskInstance.state == TaskInstanceState.FAILED)).all()
    links: dict[int, str] = {}
    for row in failed:
        group = group_id_for(row["section"])
        tag = row["source"].rsplit(":", 1)[-1] if ":" in row["source"].rsplit("/", 1)[-1] else ""
        mine = [f for f in found if f.dag_id == row["dag_id"] and f.run_id == row["run_id"]
                and (f.task_id.startswith(f"{group}.") or f.task_id == f"tags_{group}")]
        # The step that failed first (record fails too, to mark the run), of this tag where mapped.
        mine.sort(key=lambda f: (f.rendered_map_index not in (tag, None), _STEPS.get(f.task_id.rsplit(".", 1)[-1], 0)))
        best = mine[0] if mine else None
        if best is not None:
            where = f"../dags/{quote(best.dag_id)}/runs/{quote(best.run_id, safe='')}/tasks/{quote(best.task_id)}"
            links[row["id"]] = where + (f"/mapped/{best.map_index}" if best.map_index >= 0 else "")
    return links


def _when(value: object) -> str:
    return when(value, "%Y-%m-%d %H:%M")  # UTC, as the column titles say


def _run_label(run_id: str) -> str:
    """`manual__2026-11-30T02:49:53.99+00:00` -> `manual 11-30 02:49`: short in tables, whole on hover."""
    kind, _, stamp = run_id.partition("__")
    try:
        return f"{kind} {datetime.fromisoformat(stamp):%m-%d %H:%M}"
    except ValueError:
        return run_id if len(run_id) <= 32 else run_id[:31] + "…"


def _run_link(dag_id: str, run_id: str, short: bool = False, with_dag: bool = False) -> str:
    text = (f"{dag_id} · " if with_dag else "") + _run_label(run_id) if short else f"{dag_id} / {run_id}"
    return (f'<a target="_top" title="{e(dag_id)} / {e(run_id)}" '
            f'href="../dags/{quote(dag_id)}/runs/{quote(run_id, safe="")}">{e(text)}</a>')


def _digest(value: str | None) -> str:
    """Short in the table, whole on hover (and in the page source)."""
    if not value:
        return "-"
    return f'<code title="{e(value)}">{e(value.split(":", 1)[-1][:12])}…</code>'


def _image_link(target: str) -> str:
    return f'<a href="image?{urlencode({"target": target})}">{e(target)}</a>'


def _cloud(row: dict) -> str:
    """A small ECR / GAR / ACR badge by the target (the whole name on hover)."""
    kind = row.get("target_kind") or ""
    if kind not in CLOUD_NAMES or kind == "registry":
        return ""
    return f' <span class="badge" title="{e(CLOUD_NAMES[kind])}">{e(kind.upper())}</span>'



def _status(value: str) -> str:
    return f'<span class="{e(value)}">{e(value)}</span>'


def _error(row: dict, links: dict[int, str]) -> str:
    text = e(row["error"] or "")
    link = links.get(row["id"])
    return text + (f' <a target="_top" class="log" href="{e(link)}">task log</a>' if link else "")


def _mirror_now(row: dict, allowed: set[str], back: str) -> str:
    """'Mirror now' (and 'force'): a run of the section's DAG with only this section, for users who may."""
    if row["dag_id"] not in allowed or not row.get("section"):
        return ""
    return ('<form class="act" method="post" action="trigger">'
            f'<input type="hidden" name="dag_id" value="{e(row["dag_id"])}">'
            f'<input type="hidden" name="section" value="{e(row["section"])}">'
            f'<input type="hidden" name="back" value="{e(back)}">'
            '<button class="primary mirror-now" name="force" value="false" title="run this section now">'
            'Mirror now</button><button class="force" name="force" value="true" title="copy even when unchanged">'
            'force</button></form>')


def _render(html_and_status: tuple[str, int]) -> HTMLResponse:
    return HTMLResponse(*html_and_status)


def _banner(triggered: str | None) -> str:
    """After 'Mirror now': which run started, with a link to it."""
    if not triggered or "|" not in triggered:
        return ""
    dag_id, run_id, section = [*triggered.split("|"), ""][:3]
    return (f'<p class="banner" data-dag="{e(dag_id)}" data-run="{e(run_id)}">Started {_run_link(dag_id, run_id)} '
            f"for section {e(section)}.</p>")


@app.get("/", response_class=HTMLResponse)
async def state_page(user: GetUserDep, section: str | None = None, sort: str | None = None, dir: str = "asc",
                     page: Page = 1, triggered: str | None = None) -> HTMLResponse:
    rows = await run_in_threadpool(_query, user, "state", section=section or None)
    recent, totals = await run_in_threadpool(_overview, user)
    allowed = await run_in_threadpool(triggerable, user, {r["dag_id"] for r in rows})
    week_ago = datetime.now(UTC) - timedelta(days=7)
    cards = headline(images=sum(1 for r in rows if r["last_digest"]),
                     failing=sum(1 for r in rows if r["last_status"] == "failed"),
                     changed=sum(1 for r in rows if r["last_changed"] and r["last_changed"] >= week_ago),
                     nbytes=totals["bytes"])
    params = {"section": section or "", "sort": sort or "", "dir": dir}
    back = "./?" + urlencode({k: v for k, v in {**params, "page": page}.items() if v})
    form = ('<form class="filters" method="get" action="./">'
            f'<label>Section <input name="section" value="{e(section or "")}"></label>'
            '<button type="submit">Filter</button></form>')
    columns = [
        Column("Target", lambda r: _image_link(r["target"]) + _cloud(r), lambda r: r["target"], "target"),
        Column("Section", lambda r: f'<a href="./?{urlencode({"section": r["section"]})}">{e(r["section"])}</a>',
               lambda r: r["section"], "section"),
        Column("Digest", lambda r: _digest(r["last_digest"])),
        Column("Status", lambda r: _status(r["last_status"]), lambda r: r["last_status"], "status"),
        Column(f"Last {RECENT_RUNS} runs", lambda r: run_strip(recent.get(r["target"], ())),
               lambda r: sum(x["status"] == "failed" for x in recent.get(r["target"], ())), "failures"),
        Column("Last changed (UTC)", lambda r: _when(r["last_changed"]), lambda r: r["last_changed"], "changed",
               "nowrap"),
        Column("Last run", lambda r: _run_link(r["dag_id"], r["last_run_id"], short=True), lambda r: r["last_checked"],
               "checked", "nowrap"),
        Column("", lambda r: _mirror_now(r, allowed, back), css="nowrap"),
    ]
    body = table(columns, rows, "No image has been mirrored yet." if not section else
                 "No image of this section has been mirrored yet.", params, sort, dir, page)
    budget = ""
    if not section:
        points = await run_in_threadpool(_query, user, "budget")
        waiting = await run_in_threadpool(waiting_for_pulls, user) if points else {}
        budget = budget_section(points, waiting)
    return _render(page_html("Image mirror: current state" + (f" of section {section!r}" if section else ""),
                             _banner(triggered) + cards + budget + form + body))


@app.get("/history", response_class=HTMLResponse)
async def history_page(user: GetUserDep, image: str | None = None, status: str | None = None, since: str | None = None,
                       until: str | None = None, dag_id: str | None = None, sort: str | None = None,
                       dir: str = "desc", page: Page = 1,
                       limit: Limit = 2000) -> HTMLResponse:
    since_at, until_at = _date(since), _date(until, end=True)
    rows = await run_in_threadpool(_query, user, "history", image=image or None, status=status or None,
                                   dag_id=dag_id or None, since=since_at, until=until_at, limit=limit)
    links = await run_in_threadpool(failed_task_links, [r for r in rows if r["status"] == "failed"][:500])
    options = "".join(f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>' for s in STATUSES)
    form = (
        '<form class="filters" method="get" action="history">'
        f'<label>Image <input name="image" value="{e(image or "")}"></label>'
        f'<label>Status <select name="status"><option value="">any</option>{options}</select></label>'
        f'<label>From <input type="date" name="since" value="{e(since or "")}"></label>'
        f'<label>To <input type="date" name="until" value="{e(until or "")}"></label>'
        + (f'<input type="hidden" name="dag_id" value="{e(dag_id)}">' if dag_id else "")
        + '<button type="submit">Filter</button></form>'
    )
    columns = [
        Column("Finished (UTC)", lambda r: _when(r["finished_at"]), lambda r: (r["finished_at"], r["id"]), "finished"),
        Column("Status", lambda r: _status(r["status"]), lambda r: r["status"], "status"),
        Column("Target", lambda r: _image_link(r["target"]), lambda r: r["target"], "target"),
        Column("Source digest", lambda r: _digest(r["source_digest"])),
        Column("Target digest", lambda r: _digest(r["target_digest"])),
        Column("Bytes", lambda r: e(human_bytes(r["bytes_transferred"] or 0)), lambda r: r["bytes_transferred"],
               "bytes", "nowrap"),
        Column("Blobs c/m/s", lambda r: f"{r['blobs_copied']}/{r['blobs_mounted']}/{r['blobs_skipped']}"),
        Column("DAG run", lambda r: _run_link(r["dag_id"], r["run_id"], short=True, with_dag=not dag_id),
               css="nowrap"),
        Column("Error", lambda r: _error(r, links)),
    ]
    params = {"image": image or "", "status": status or "", "since": since or "", "until": until or "",
              "dag_id": dag_id or "", "sort": sort or "", "dir": dir}
    chart = ""
    if dag_id:  # the DAG tab: its runs over time
        runs = await run_in_threadpool(_query, user, "runs", dag_id=dag_id, limit=60)
        chart = dag_runs_chart(runs)
    title = f"Image mirror: history of {dag_id}" if dag_id else "Image mirror: history"
    return _render(page_html(title, chart + form + table(columns, rows, "No history matches these filters.", params,
                                                         sort or "finished", dir, page, path="history")))


@app.get("/image", response_class=HTMLResponse)
async def image_page(user: GetUserDep, target: str, triggered: str | None = None) -> HTMLResponse:
    timeline = await run_in_threadpool(lambda: _query(user, "timeline", target=target))
    rows = await run_in_threadpool(_query, user, "history", target=target, limit=1000)
    links = await run_in_threadpool(failed_task_links, rows[:50])
    state = await run_in_threadpool(_query, user, "state", target=target)
    allowed = await run_in_threadpool(triggerable, user, {r["dag_id"] for r in state})
    brought = {}
    for r in reversed(rows):  # oldest first: the first run that wrote or found each digest
        if r["target_digest"] and r["status"] in ("copied", "unchanged"):
            brought.setdefault(r["target_digest"], r)
    lanes = [{**t, "run_id": brought[t["digest"]]["run_id"] if t["digest"] in brought else "",
              "dag_id": brought[t["digest"]]["dag_id"] if t["digest"] in brought else ""} for t in timeline]
    back = "image?" + urlencode({"target": target})
    act = _mirror_now(state[0], allowed, back) if state else ""
    digests = table([Column("Digest", lambda t: f"<code>{e(t['digest'])}</code>"),
                     Column("First seen (UTC)", lambda t: _when(t["first_seen"]), css="nowrap"),
                     Column("Brought by", lambda t: _run_link(t["dag_id"], t["run_id"], short=True) if t["run_id"]
                            else "-", css="nowrap"),
                     Column("Last seen", lambda t: _when(t["last_seen"]), css="nowrap"),
                     Column("Runs", lambda t: e(t["runs"]))],
                    lanes, "This image has no digest on record.", {}, None, "asc", 1, per=1000)
    latest = rows[:50]
    runs = table([Column("Finished (UTC)", lambda r: _when(r["finished_at"])),
                  Column("Status", lambda r: _status(r["status"])),
                  Column("Target digest", lambda r: _digest(r["target_digest"])),
                  Column("Bytes", lambda r: e(human_bytes(r["bytes_transferred"] or 0)), css="nowrap"),
                  Column("Blobs c/m/s", lambda r: f"{r['blobs_copied']}/{r['blobs_mounted']}/{r['blobs_skipped']}"),
                  Column("DAG run", lambda r: _run_link(r["dag_id"], r["run_id"], short=True), css="nowrap"),
                  Column("Error", lambda r: _error(r, links))], latest, "No runs on record.", {}, None, "asc", 1,
                 per=50)
    body = (_banner(triggered) + (f"<p>{act}</p>" if act else "") + "<h2>Digests</h2>"
            + digest_timeline(lanes, datetime.now(UTC)) + digests + "<h2>Latest runs</h2>"
            + blob_chart(latest[::-1]) + runs)
    return _render(page_html(f"Image mirror: {target}", body))


@app.post("/trigger", response_class=HTMLResponse, response_model=None)
async def trigger(request: Request, user: GetUserDep) -> Response:
    """'Mirror now': a run of the DAG with `sections=[section]` (and `force`), started through Airflow's own
    REST API with the caller's own credentials, so Airflow decides and records who started it."""
    if not _same_origin(request):  # another site's form posting with the user's cookie
        return _render(page_html("Image mirror: refused", '<p class="banner error">A run can only be started from '
                                 "this Airflow's own pages.</p>", 403))
    form = parse_qs((await request.body()).decode(errors="replace"))
    dag_id, section = form.get("dag_id", [""])[0], form.get("section", [""])[0]
    force = form.get("force", ["false"])[0] == "true"
    back = form.get("back", ["./"])[0]
    if not back.startswith(("./", "image?", "history")):
        back = "./"
    if not dag_id or not section:
        return _render(page_html("Image mirror: nothing to start", '<p class="banner error">Which DAG and section '
                                 "to mirror is missing.</p>", 400))
    allowed = await run_in_threadpool(triggerable, user, {dag_id})
    if dag_id not in allowed:
        return _render(page_html("Image mirror: not allowed", f'<p class="banner error">You may not start runs of '
                                 f"{e(dag_id)}.</p>", 403))
    response = await _airflow_api(request, "POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns",
                                  {"logical_date": None, "conf": {"sections": [section], "force": force},
                                   "note": f"Mirror now{' (force)' if force else ''}: {section}, from the Image "
                                           "mirror page"})
    if response.status_code >= 300:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else ""
        return _render(page_html("Image mirror: the run did not start", f'<p class="banner error">Airflow said '
                                 f"{response.status_code}: {e(detail or response.text[:300])}</p>",
                                 response.status_code))
    run_id = response.json()["dag_run_id"]
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}{urlencode({'triggered': f'{dag_id}|{run_id}|{section}'})}", 303)


def _same_origin(request: Request) -> bool:
    """A browser says where a form came from (Sec-Fetch-Site, else Origin); clients with a token say nothing."""
    site = request.headers.get("sec-fetch-site")
    if site:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return not origin or urlsplit(origin).netloc in hosts


async def _airflow_api(request: Request, method: str, path: str, body: dict) -> httpx.Response:
    """Airflow's REST API in this very api-server (no network hop), as the caller: their bearer token or
    session cookie goes along."""
    from airflow.api_fastapi.app import cached_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    root = cached_app(apps=os.environ.get("AIRFLOW_API_APPS", "all"))
    headers = {}
    if request.headers.get("authorization"):
        headers["Authorization"] = request.headers["authorization"]
    elif request.cookies.get(COOKIE_NAME_JWT_TOKEN):
        headers["Authorization"] = f"Bearer {request.cookies[COOKIE_NAME_JWT_TOKEN]}"
    transport = httpx.ASGITransport(app=root)
    async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
        return await client.request(method, path, json=body, headers=headers)


@app.get("/api/state")
async def state_json(user: GetUserDep, section: str | None = None) -> JSONResponse:
    rows = await run_in_threadpool(_query, user, "state", section=section or None)
    return JSONResponse([{k: _json(v) for k, v in r.items()} for r in rows])


@app.get("/api/history")
async def history_json(user: GetUserDep, image: str | None = None, status: str | None = None,
                       limit: Limit = 200) -> JSONResponse:
    rows = await run_in_threadpool(_query, user, "history", image=image, status=status, limit=limit)
    return JSONResponse([{k: _json(v) for k, v in r.items()} for r in rows])


def _json(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _date(text: str | None, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        return None
    day = day.replace(tzinfo=day.tzinfo or UTC)
    return day.replace(hour=23, minute=59, second=59) if end and len(text) == 10 else day


class DmiHistoryPlugin(AirflowPlugin):
    name = "dmi_image_mirror"
    listeners = [listeners]  # creates the per-source pools in the scheduler
    fastapi_apps = [{"app": app, "url_prefix": "/dmi", "name": "DMI image mirror"}]
    external_views = [
        {"name": "Image mirror", "href": "dmi/", "destination": "nav", "url_route": "dmi-image-mirror",
         "category": "browse"},
        {"name": "Image mirror", "href": "dmi/history?dag_id={DAG_ID}", "destination": "dag",
         "url_route": "dmi-image-mirror-dag"},
    ]
