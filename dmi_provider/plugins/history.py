"""The "Image mirror" pages in the Airflow UI: current state, history with filters, one image's timeline.

A FastAPI app mounted by the api-server under /dmi, behind Airflow's own authentication (the caller's
JWT, as a bearer token or the UI's session cookie). Only routes here: plugins/query.py reads and shapes
what a page shows (rows filtered, in SQL, to the DAGs the caller may read; the tracking databases only
read), templates/ draws it (Jinja2, autoescaped; charts as SVG, tables sort and page on the server),
static/ holds the stylesheet and the one script (it follows the Airflow UI's light or dark theme and sends
links to Airflow's pages through the UI's router). "Mirror now" starts a run through Airflow's own REST
API as the caller.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from dmi_provider.plugins import query
from dmi_provider.plugins.query import HistoryAsk, Limit, StateAsk
from dmi_provider.plugins.render import STATIC, render

app = FastAPI(title="DMI image mirror", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])
# The stylesheet and the script: no secret in them, so outside the pages' authentication (as Airflow's own).
app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")


def _page(template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(render(template, **context), status_code)


def _message(title: str, status_code: int, reason: str, **values: object) -> HTMLResponse:
    return _page("message.html", {"title": title, "reason": reason, **values}, status_code)


@app.get("/", response_class=HTMLResponse)
async def state_page(user: GetUserDep, ask: Annotated[StateAsk, Depends()]) -> HTMLResponse:
    return _page("state.html", await run_in_threadpool(query.state_view, user, ask))


@app.get("/history", response_class=HTMLResponse)
async def history_page(user: GetUserDep, ask: Annotated[HistoryAsk, Depends()]) -> HTMLResponse:
    return _page("history.html", await run_in_threadpool(query.history_view, user, ask))


@app.get("/image", response_class=HTMLResponse)
async def image_page(user: GetUserDep, target: str, triggered: str | None = None) -> HTMLResponse:
    return _page("image.html", await run_in_threadpool(query.image_view, user, target, triggered))


@app.post("/trigger", response_class=HTMLResponse, response_model=None)
async def trigger(request: Request, user: GetUserDep) -> Response:
    """'Mirror now': a run of the DAG with `sections=[section]` (and `force`), started through Airflow's own
    REST API with the caller's own credentials, so Airflow decides and records who started it."""
    if not _same_origin(request):  # another site's form posting with the user's cookie
        return _message("Image mirror: refused", 403, "cross-site")
    form = parse_qs((await request.body()).decode(errors="replace"))
    dag_id, section = form.get("dag_id", [""])[0], form.get("section", [""])[0]
    force = form.get("force", ["false"])[0] == "true"
    back = form.get("back", ["./"])[0]
    if not back.startswith(("./", "image?", "history")):
        back = "./"
    if not dag_id or not section:
        return _message("Image mirror: nothing to start", 400, "missing")
    if dag_id not in await run_in_threadpool(query.triggerable, user, {dag_id}):
        return _message("Image mirror: not allowed", 403, "forbidden", dag_id=dag_id)
    response = await _airflow_api(request, "POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns",
                                  {"logical_date": None, "conf": {"sections": [section], "force": force},
                                   "note": f"Mirror now{' (force)' if force else ''}: {section}, from the Image "
                                           "mirror page"})
    if response.status_code >= 300:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else ""
        return _message("Image mirror: the run did not start", response.status_code, "airflow",
                        status=response.status_code, detail=detail or response.text[:300])
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
    rows = await run_in_threadpool(lambda: query.rows(query.readable_dags(user), "state", section=section or None))
    return JSONResponse([{k: _json(v) for k, v in r.items()} for r in rows])


@app.get("/api/history")
async def history_json(user: GetUserDep, image: str | None = None, status: str | None = None,
                       limit: Limit = 200) -> JSONResponse:
    rows = await run_in_threadpool(lambda: query.rows(query.readable_dags(user), "history", image=image,
                                                      status=status, limit=limit))
    return JSONResponse([{k: _json(v) for k, v in r.items()} for r in rows])


def _json(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


class DmiHistoryPlugin(AirflowPlugin):
    """The pages only: the scheduler's pools come from DmiPoolsPlugin (plugins/scheduler.py), which every
    deployment needs, pages or not."""

    name = "dmi_image_mirror"
    fastapi_apps = [{"app": app, "url_prefix": "/dmi", "name": "DMI image mirror"}]
    external_views = [
        {"name": "Image mirror", "href": "dmi/", "destination": "nav", "url_route": "dmi-image-mirror",
         "category": "browse"},
        {"name": "Image mirror", "href": "dmi/history?dag_id={DAG_ID}", "destination": "dag",
         "url_route": "dmi-image-mirror-dag"},
    ]
