"""The "Image mirror" pages in the Airflow UI: current state, history with filters, one image's timeline.

A FastAPI app mounted by the api-server under /dmi, behind Airflow's own authentication (the
caller's JWT, as a bearer token or the UI's session cookie). Rows are filtered, in SQL, to the DAGs the
caller may read; the tracking databases are only read (nothing is created or migrated here). Pages are
plain server-rendered HTML: the UI shows them in a sandboxed iframe, so they use no script.
"""

from __future__ import annotations

import functools
import html
import os
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import BaseUser, GetUserDep, requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from dmi_provider import listeners
from dmi_provider.config import ConfigError, load_config, read_environment
from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.hooks.connections import DEFAULT_TRACKING_CONN_ID, tracking_url
from dmi_provider.plugins.charts import CHART_STYLE, budget_chart, budget_headline
from dmi_provider.tracking.store import STATUSES, TrackingStore, when

TRACKING_CONN_ID = os.environ.get("DMI_TRACKING_CONN_ID", DEFAULT_TRACKING_CONN_ID)

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

    sources = {(s.dag_id, f"{s.group_id}.pull"): s.source_registry for s in _config_sections()}
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
          "budget": (lambda r: r["finished_at"], False),
          "history": (lambda r: (r["finished_at"], r["id"]), True)}


def readable_dags(user: BaseUser) -> set[str]:
    """The DAGs this user may read, as Airflow's auth manager says: rows of other DAGs are not shown."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _query(user: BaseUser, method: str, **kwargs: object) -> list[dict]:
    """Rows of every tracking database, read-only (the UI never creates or migrates tables)."""
    kwargs["dag_ids"] = readable_dags(user)
    rows: list[dict] = []
    for url in tracking_urls():
        store = TrackingStore(url, read_only=True)
        try:
            rows += getattr(store, method)(**kwargs)
        finally:
            store.close()
    key, reverse = _ORDER[method]
    rows.sort(key=key, reverse=reverse)
    limit = kwargs.get("limit")
    return rows[: int(limit)] if isinstance(limit, int) else rows


def _when(value: object) -> str:
    return when(value, "%Y-%m-%d %H:%M UTC")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _run_link(dag_id: str, run_id: str) -> str:
    return (f'<a target="_top" href="../dags/{quote(dag_id)}/runs/{quote(run_id, safe="")}">'
            f"{_e(dag_id)} / {_e(run_id)}</a>")


def _digest(value: str | None) -> str:
    """Short in the table, whole on hover (and in the page source)."""
    if not value:
        return "-"
    return f'<code title="{_e(value)}">{_e(value[:19])}…</code>'


def _image_link(target: str) -> str:
    return f'<a href="image?{urlencode({"target": target})}">{_e(target)}</a>'


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1a202c}h1{font-size:1.3rem}
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%;font-size:.88rem;margin-top:.8rem}
th,td{border-bottom:1px solid #e2e8f0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f7fafc}code{font-size:.82rem}td:first-child{white-space:nowrap}.copied{color:#2f855a}.unchanged{color:#4a5568}
.failed{color:#c53030;font-weight:600}.dry-run{color:#b7791f}form label{margin-right:.8rem}
.empty{color:#718096;margin-top:1rem}
"""


def _page(title: str, body: str) -> HTMLResponse:
    nav = '<nav><a href="./">Current state</a><a href="history">History</a></nav>'
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
                        f"<style>{STYLE}{CHART_STYLE}</style></head><body><h1>{_e(title)}</h1>{nav}{body}"
                        "</body></html>")


def _table(header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@app.get("/", response_class=HTMLResponse)
async def state_page(user: GetUserDep, section: str | None = None) -> HTMLResponse:
    rows = await run_in_threadpool(_query, user, "state", section=section or None)
    form = ('<form method="get" action="./">'
            f'<label>Section <input name="section" value="{_e(section or "")}"></label>'
            '<button type="submit">Filter</button></form>')
    table = _table(
        ["Target", "Cloud", "Section", "Source", "Digest", "Status", "First mirrored", "Last checked",
         "Last changed", "Last run"],
        [[_image_link(r["target"]), _e(CLOUD_NAMES.get(r.get("target_kind") or "", "-")),
          f'<a href="./?{urlencode({"section": r["section"]})}">{_e(r["section"])}</a>',
          _e(r["source"]), _digest(r["last_digest"]),
          f'<span class="{_e(r["last_status"])}">{_e(r["last_status"])}</span>', _when(r["first_mirrored"]),
          _when(r["last_checked"]), _when(r["last_changed"]), _run_link(r["dag_id"], r["last_run_id"])]
         for r in rows],
        "No image has been mirrored yet." if not section else "No image of this section has been mirrored yet.")
    budget = ""
    if not section:
        points = await run_in_threadpool(_query, user, "budget")
        waiting = await run_in_threadpool(waiting_for_pulls, user) if points else {}
        budget = budget_section(points, waiting)
    return _page("Image mirror: current state" + (f" of section {section!r}" if section else ""),
                 budget + form + table)


@app.get("/history", response_class=HTMLResponse)
async def history_page(user: GetUserDep, image: str | None = None, status: str | None = None, since: str | None = None,
                       until: str | None = None, dag_id: str | None = None,
                       limit: int = Query(200, ge=1, le=5000)) -> HTMLResponse:
    since_at, until_at = _date(since), _date(until, end=True)
    rows = await run_in_threadpool(_query, user, "history", image=image or None, status=status or None,
                                   dag_id=dag_id or None,
                                   since=since_at, until=until_at, limit=limit)
    options = "".join(f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>' for s in STATUSES)
    form = (
        '<form method="get" action="history">'
        f'<label>Image <input name="image" value="{_e(image or "")}"></label>'
        f'<label>Status <select name="status"><option value="">any</option>{options}</select></label>'
        f'<label>From <input type="date" name="since" value="{_e(since or "")}"></label>'
        f'<label>To <input type="date" name="until" value="{_e(until or "")}"></label>'
        + (f'<input type="hidden" name="dag_id" value="{_e(dag_id)}">' if dag_id else "")
        + '<button type="submit">Filter</button></form>'
    )
    table = _table(
        ["Finished", "Status", "Target", "Source digest", "Target digest", "Bytes", "Blobs c/m/s", "DAG run",
         "Error"],
        [[_when(r["finished_at"]), f'<span class="{_e(r["status"])}">{_e(r["status"])}</span>',
          _image_link(r["target"]), _digest(r["source_digest"]), _digest(r["target_digest"]),
          _e(r["bytes_transferred"]),
          f"{r['blobs_copied']}/{r['blobs_mounted']}/{r['blobs_skipped']}", _run_link(r["dag_id"], r["run_id"]),
          _e(r["error"] or "")] for r in rows],
        "No history matches these filters.")
    title = f"Image mirror: history of {dag_id}" if dag_id else "Image mirror: history"
    return _page(title, form + table)


@app.get("/image", response_class=HTMLResponse)
async def image_page(user: GetUserDep, target: str) -> HTMLResponse:
    timeline = await run_in_threadpool(lambda: _query(user, "timeline", target=target))
    rows = await run_in_threadpool(_query, user, "history", target=target, limit=50)
    digests = _table(["Digest", "First seen", "Last seen", "Runs"],
                     [[f"<code>{_e(t['digest'])}</code>", _when(t["first_seen"]), _when(t["last_seen"]),
                       _e(t["runs"])] for t in timeline], "This image has no digest on record.")
    runs = _table(["Finished", "Status", "Target digest", "DAG run", "Error"],
                  [[_when(r["finished_at"]), f'<span class="{_e(r["status"])}">{_e(r["status"])}</span>',
                    _digest(r["target_digest"]), _run_link(r["dag_id"], r["run_id"]),
                    _e(r["error"] or "")] for r in rows], "No runs on record.")
    return _page(f"Image mirror: {target}", f"<h2>Digests</h2>{digests}<h2>Latest runs</h2>{runs}")


@app.get("/api/state")
async def state_json(user: GetUserDep, section: str | None = None) -> JSONResponse:
    rows = await run_in_threadpool(_query, user, "state", section=section or None)
    return JSONResponse([{k: _json(v) for k, v in r.items()} for r in rows])


@app.get("/api/history")
async def history_json(user: GetUserDep, image: str | None = None, status: str | None = None,
                       limit: int = Query(200, ge=1, le=5000)) -> JSONResponse:
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
