"""The way users run it: a real Airflow deployment (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, PostgreSQL), driven through the REST API v2, the CLI and a browser."""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from dmi_provider.tracking.store import TrackingStore
from tests.rig.browser import chromium, login, plugin_frame
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.stack import AIRFLOW, AirflowStack

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BUDGET_IMAGES = tuple(f"budget{i}" for i in range(5))
BUDGET_WINDOW = 20
SERIAL_IMAGES = tuple(f"serial{i}" for i in range(4))
VIEWER = "viewer"  # may read, may not trigger


def _sections(group: str, images: tuple[str, ...], refresh: str, hub, ecr, extra: str) -> str:  # type: ignore[no-untyped-def]
    """Sections of their own DAG (one refresh each) reading from their own Hub stand-in."""
    return "".join(f"""
[{group}/{name}]
image = {name}
refresh = {refresh}
source-registry = {hub.host}
insecure-registries = {hub.host} {ecr.registry.host}
project = stack-{group}
{extra}
""" for name in images)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres, hub_registry, ecr):
    from tests.rig.proxy import Proxy
    from tests.rig.services import MOTO_REGION

    root = tmp_path_factory.mktemp("stack")
    hub = Proxy(hub_registry.url, ratelimit=1000).start()
    # A Hub with 3 pulls per 20 s for the budget DAG (dmi_mirror_52w, which runs once as the stack starts).
    budget_hub = Proxy(hub_registry.url, ratelimit=3, window=BUDGET_WINDOW).start()
    # The serial DAG (dmi_mirror_51w): its sections share a pool of one slot that the user made.
    serial_hub = Proxy(hub_registry.url).start()
    factory_images = {}
    from tests.rig.images import ImageFactory

    factory = ImageFactory(seed=99)
    for name in ("proxyv2", "pilot", "ticker", *BUDGET_IMAGES, *SERIAL_IMAGES):
        artifact = factory.image()
        push(rig_client(hub_registry, HUB_USER), f"stack/{name}", "1.0", artifact)
        factory_images[name] = artifact
    config = root / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        target-registry = {ecr.registry.host}
        insecure-registries = {hub.host} {ecr.registry.host}
        source-repository = stack
        project = stack-mirror
        tag = 1.0

        [aws/proxyv2]
        image = proxyv2

        [aws/pilot]
        image = pilot

        [ticker]
        image = ticker
        refresh = 1m
    """) + _sections("budget", BUDGET_IMAGES, "52w", budget_hub, ecr, "pull-reserve = 0%")
        + _sections("serial", SERIAL_IMAGES, "51w", serial_hub, ecr, "source-pool = dmi_serial")
        + _sections("nopool", ("ticker",), "50w", serial_hub, ecr, "source-pool = no_such_pool")
        + _sections("broken", ("not-there",), "49w", hub, ecr, ""))  # fails: no such image at the source
    tracking = postgres.database("stack_tracking")
    env = {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                "extra": {"region_name": MOTO_REGION,
                                                          "endpoint_url": ecr.moto.endpoint}}),
        "AWS_DEFAULT_REGION": MOTO_REGION, "AWS_ACCOUNT": ecr.account,
        "AIRFLOW_CONN_DMI_TRACKING": tracking.replace("postgresql+psycopg2://", "postgres://"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    airflow = AirflowStack(root, postgres.database("stack_airflow"), config, env, pools={"dmi_serial": 1},
                           users={VIEWER: ("viewer", "dmi-stack-viewer-pass")}).start()
    airflow.hub, airflow.images, airflow.tracking = hub, factory_images, tracking  # type: ignore[attr-defined]
    airflow.budget_hub, airflow.serial_hub = budget_hub, serial_hub  # type: ignore[attr-defined]
    yield airflow
    airflow.stop()
    for proxy in (hub, budget_hub, serial_hub):
        proxy.stop()


def test_trigger_with_conf_through_the_rest_api(stack):
    stack.wait_for("dmi_mirror to be parsed", lambda: stack.api("GET", "/api/v2/dags/dmi_mirror").status_code == 200)
    r = stack.api("POST", "/api/v2/dags/dmi_mirror/dagRuns", json={"logical_date": None, "conf": {"force": True}})
    assert r.status_code == 200, r.text
    run = stack.wait_run("dmi_mirror", r.json()["dag_run_id"])
    assert run["state"] == "success", stack.logs()
    assert run["conf"] == {"force": True}
    rows = TrackingStore(stack.tracking).history(limit=500)
    mine = [row for row in rows if row["run_id"] == run["dag_run_id"]]
    assert sorted(row["section"] for row in mine) == ["aws/pilot", "aws/proxyv2"]
    assert {row["status"] for row in mine} == {"copied"}
    assert {row["target_digest"] for row in mine} == {stack.images["proxyv2"].digest, stack.images["pilot"].digest}


def test_a_short_refresh_runs_by_itself(stack):
    def scheduled() -> list[dict]:
        return [r for r in stack.runs("dmi_mirror_1m") if r["run_type"] == "scheduled" and r["state"] == "success"]

    runs = stack.wait_for("a scheduled run of dmi_mirror_1m", scheduled, timeout=300, every=5)
    rows = [r for r in TrackingStore(stack.tracking).history(limit=500) if r["run_id"] == runs[0]["dag_run_id"]]
    assert [(r["section"], r["status"] in ("copied", "unchanged")) for r in rows] == [("ticker", True)]


def test_backfill_creates_runs_that_complete(stack):
    stack.wait_for("dmi_mirror to be parsed", lambda: stack.api("GET", "/api/v2/dags/dmi_mirror").status_code == 200)
    done = subprocess.run([AIRFLOW, "backfill", "create", "--dag-id", "dmi_mirror", "--from-date", "2026-10-01",
                           "--to-date", "2026-10-14"], env=stack.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    def finished() -> list[dict] | None:
        runs = [r for r in stack.runs("dmi_mirror") if r["run_type"] == "backfill"]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = stack.wait_for("the backfill runs", finished, timeout=400, every=5)
    assert len(runs) == 2 and {r["state"] for r in runs} == {"success"}
    logical = sorted(r["logical_date"][:10] for r in runs)
    assert logical == ["2026-10-01", "2026-10-08"]  # every 1w from the range's start
    rows = TrackingStore(stack.tracking).history(limit=500)
    recorded = sorted({r["logical_date"].date().isoformat() for r in rows if r["run_id"] in
                       {x["dag_run_id"] for x in runs}})
    assert recorded == logical


def test_history_pages_need_a_login_and_show_the_images(stack):
    stack.wait_for("a recorded image", lambda: TrackingStore(stack.tracking).state())
    for path in ("/dmi/", "/dmi/history", "/dmi/api/state"):
        assert httpx.get(f"{stack.url}{path}", timeout=30).status_code in (401, 403)  # anonymous: refused
    page = stack.api("GET", "/dmi/")
    assert page.status_code == 200
    target = "stack-mirror/proxyv2:1.0"
    assert target in page.text and stack.images["proxyv2"].digest in page.text
    history = stack.api("GET", "/dmi/history", params={"status": "copied", "dag_id": "dmi_mirror"})
    assert "copied" in history.text and "/runs/" in history.text
    state = stack.api("GET", "/dmi/api/state").json()
    full = next(r["target"] for r in state if r["target"].endswith(target))
    timeline = stack.api("GET", "/dmi/image", params={"target": full})
    assert stack.images["proxyv2"].digest in timeline.text
    plugins = stack.api("GET", "/api/v2/plugins").json()["plugins"]
    mine = next(p for p in plugins if p["name"] == "dmi_image_mirror")
    assert {v["destination"] for v in mine["external_views"]} == {"nav", "dag"}


def test_history_page_in_a_browser(stack):
    from tests.rig.stack import PASSWORD, USER

    stack.wait_for("a recorded image", lambda: TrackingStore(stack.tracking).state())
    ARTIFACTS.mkdir(exist_ok=True)
    shots = [ARTIFACTS / "dmi-image-mirror.png", ARTIFACTS / "dmi-image-mirror-dag-tab.png"]
    with chromium() as browser:
        anonymous = browser.new_page().goto(f"{stack.url}/dmi/")
        assert anonymous is not None and anonymous.status in (401, 403)
        page = login(browser, stack.url, USER, PASSWORD)
        # The "Image mirror" entry of the UI: our page in Airflow's frame.
        for shot, path in ((shots[0], "/plugin/dmi-image-mirror"),
                           (shots[1], "/dags/dmi_mirror/plugin/dmi-image-mirror-dag")):
            page.goto(f"{stack.url}{path}")
            frame = plugin_frame(page, "table")
            assert "stack-mirror/proxyv2:1.0" in frame.inner_text("table")
            page.screenshot(path=str(shot))
    for shot in shots:
        assert shot.stat().st_size > 10_000
    print(f"screenshots: {', '.join(map(str, shots))} ({datetime.now(UTC).isoformat()})")


def test_the_registry_connection_type_and_its_test_button(stack, basic_registry, hub_registry, tls_registry, test_ca):
    """DMI's `container_registry` connection: listed with its form, and Airflow's Test button (the api-server's
    connection-test endpoint) says in one line what works or what failed."""
    from tests.rig.fixtures import BASIC_USER, TLS_USER
    from tests.rig.process import free_port

    meta = {h["connection_type"]: h for h in stack.api("GET", "/ui/connections/hook_meta").json()}
    form = meta["container_registry"]
    assert form["hook_name"] == "Container Registry (DMI)"
    assert set(form["extra_fields"]) >= {"proxy", "ca_bundle", "insecure", "test_repository"}
    assert form["standard_fields"]["host"]["title"] == "Registry (host[:port])"

    def test(host: str, login: tuple[str, str] | None, **extra: object) -> tuple[bool, str]:
        body = {"connection_id": "registry_under_test", "conn_type": "container_registry", "host": host,
                "login": login[0] if login else None, "password": login[1] if login else None,
                "extra": json.dumps(extra)}
        r = stack.api("POST", "/api/v2/connections/test", json=body)
        assert r.status_code == 200, r.text
        return r.json()["status"], r.json()["message"]

    ok, message = test(basic_registry.host, BASIC_USER, insecure=True, test_repository="any/repo")
    assert ok, message
    assert message == (f"{basic_registry.host}: the registry answers at http://{basic_registry.host}; logged in as "
                       f"{BASIC_USER[0]} (basic auth)")
    ok, message = test(basic_registry.host, (BASIC_USER[0], "wrong-pass"), insecure=True)
    assert not ok and message == (f"GET http://{basic_registry.host}/v2/: HTTP 401 UNAUTHORIZED: authentication "
                                  f"required; {basic_registry.host} refused the login of {BASIC_USER[0]}: check the "
                                  "user and password")
    assert "wrong-pass" not in message
    ok, message = test(hub_registry.host, HUB_USER, insecure=True, test_repository="stack/pilot")
    assert ok, message
    assert message.startswith(f"{hub_registry.host}: the registry answers at http://{hub_registry.host}; logged in as "
                              f"{HUB_USER[0]}: http://127.0.0.1:")
    assert message.endswith(" gave a token for repository:stack/pilot:pull")
    ok, message = test(hub_registry.host, (HUB_USER[0], "wrong-hub-pass"), insecure=True)
    assert not ok and message.startswith(f"{hub_registry.host}: token service refused as {HUB_USER[0]} for "
                                         "repository:library/alpine:pull: HTTP 401")
    closed = f"127.0.0.1:{free_port()}"
    assert test(closed, None, insecure=True) == (False, f"{closed}: connection refused by {closed}: nothing listens "
                                                 "there (wrong host or port, or the registry is down) (gave up after "
                                                 "1 attempts)")
    ok, message = test(tls_registry.host, TLS_USER)
    assert not ok and message.startswith(f"{tls_registry.host}: TLS certificate of {tls_registry.host} not trusted")
    ok, message = test(f"https://{tls_registry.host}", TLS_USER, ca_bundle=test_ca.pem.decode())
    assert ok, message
    assert message == (f"{tls_registry.host}: the registry answers at https://{tls_registry.host}; logged in as "
                       f"{TLS_USER[0]} (basic auth)")


def test_a_run_that_needs_more_pulls_than_remain_waits_in_the_triggerer(stack):
    """The budget DAG's first (scheduled) run: 5 images, 3 pulls per 20 s at its Hub. The first pulls copy;
    the others defer (the triggerer holds them, no worker slot is taken), resume, and copy. Nothing fails,
    no manifest GET meets a 429, and the per-source pool was created by DMI's listener."""
    from dmi_provider.config import default_pool

    def finished() -> dict | None:
        runs = [r for r in stack.runs("dmi_mirror_52w") if r["state"] in ("success", "failed")]
        return runs[0] if runs else None

    run = stack.wait_for("the budget DAG's run", finished, timeout=400, every=3)
    assert run["state"] == "success", stack.logs()
    hub = stack.budget_hub
    assert hub.count("GET", "manifest", 200) == len(BUDGET_IMAGES) and hub.count("GET", "manifest", 429) == 0
    pool = stack.api("GET", f"/api/v2/pools/{default_pool(hub.host)}").json()
    assert pool["slots"] == 4 and pool["description"].startswith("DMI: ")

    tis = stack.api("GET", f"/api/v2/dags/dmi_mirror_52w/dagRuns/{run['dag_run_id']}/taskInstances",
                    params={"limit": 100}).json()["task_instances"]
    pulls = [ti for ti in tis if ti["task_id"].endswith(".pull")]
    assert len(pulls) == len(BUDGET_IMAGES) and {ti["state"] for ti in tis} == {"success"}
    assert {ti["pool"] for ti in pulls} == {default_pool(hub.host)}
    waited = []
    for ti in pulls:
        log = stack.api("GET", f"/api/v2/dags/dmi_mirror_52w/dagRuns/{run['dag_run_id']}/taskInstances/"
                               f"{ti['task_id']}/logs/{ti['try_number']}",
                        params={"map_index": ti["map_index"], "full_content": True},
                        headers={"Accept": "application/json"}).text
        if "deferred: the task resumes by itself" in log:
            waited.append(ti["task_id"])
    assert len(waited) >= 2, log[-3000:]
    rows = [r for r in TrackingStore(stack.tracking).history(limit=500) if r["run_id"] == run["dag_run_id"]]
    assert len(rows) == len(BUDGET_IMAGES) and {r["status"] for r in rows} == {"copied"}
    timeline = sorted((r["finished_at"], r["section"], r["ratelimit_remaining"]) for r in rows)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "budget-timeline.txt").write_text("\n".join(f"{t.isoformat()}  {s}  pulls left {n}"
                                                             for t, s, n in timeline) + "\n")


def test_the_pull_budget_chart_in_a_browser(stack):
    """After the budget DAG's run: the state page's headline and chart for its Hub, with one point per image
    and a tick per run, seen in Chromium inside Airflow's UI."""
    from tests.rig.stack import PASSWORD, USER

    hub = stack.budget_hub
    stack.wait_for("the budget DAG's rows", lambda: len([r for r in TrackingStore(stack.tracking).budget()
                                                         if r["registry"] == hub.host]) >= len(BUDGET_IMAGES),
                   timeout=400, every=3)
    expected = [r for r in TrackingStore(stack.tracking).budget() if r["registry"] == hub.host]
    page_html = stack.api("GET", "/dmi/").text
    assert f'data-registry="{hub.host}" data-points="{len(expected)}"' in page_html
    headline = f'<p class="dmi-headline" data-registry="{hub.host}" data-remaining="{expected[-1]["remaining"]}"'
    assert headline in page_html
    shot = ARTIFACTS / "dmi-pull-budget.png"
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = login(browser, stack.url, USER, PASSWORD)
        page.goto(f"{stack.url}/plugin/dmi-image-mirror")
        frame = plugin_frame(page, f'svg[data-registry="{hub.host}"]')
        chart = frame.query_selector(f'svg[data-registry="{hub.host}"]')
        assert len(chart.query_selector_all("circle.dmi-point")) == len(expected)
        assert chart.get_attribute("data-runs") == str(len({r["run_id"] for r in expected}))
        chart.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_a_pool_of_one_slot_lets_one_task_talk_to_the_source_at_a_time(stack):
    """dmi_mirror_51w: 4 sections in `source-pool = dmi_serial` (1 slot, made by the user): their pull and
    push tasks never overlap, and the source never sees two manifest requests at once."""
    def finished() -> dict | None:
        runs = [r for r in stack.runs("dmi_mirror_51w") if r["state"] in ("success", "failed")]
        return runs[0] if runs else None

    run = stack.wait_for("the serial DAG's run", finished, timeout=400, every=3)
    assert run["state"] == "success", stack.logs()
    tis = stack.api("GET", f"/api/v2/dags/dmi_mirror_51w/dagRuns/{run['dag_run_id']}/taskInstances",
                    params={"limit": 100}).json()["task_instances"]
    pooled = sorted((ti["start_date"], ti["end_date"], ti["task_id"]) for ti in tis
                    if ti["task_id"].endswith((".pull", ".push")))
    assert len(pooled) == 2 * len(SERIAL_IMAGES) and {ti["pool"] for ti in tis if ti["task_id"].endswith(".pull")} \
        == {"dmi_serial"}
    for (_start, end, first), (start, _end, second) in itertools.pairwise(pooled):
        assert end <= start, f"{first} and {second} overlap"
    # At the source, each task's GETs (manifests, blobs) come as one block: no two tasks ever talked to it at
    # once. (The lane's planning task, in the same pool, ran first and HEADed all four: no GET.)
    repos = [h.path.split("/")[3] for h in stack.serial_hub.hits if h.path.startswith("/v2/stack/serial")
             and h.method == "GET" and h.kind in ("manifest", "blob")]
    switches = sum(1 for a, b in itertools.pairwise(repos) if a != b)
    assert set(repos) == set(SERIAL_IMAGES) and switches <= len(pooled) - 1, repos


def test_a_pool_that_does_not_exist_is_named_where_users_look(stack):
    """`source-pool` naming a pool nobody made: DMI's listener says so in the run's note (shown in the UI)
    and the scheduler's log, and does not make up a pool it does not own. The run waits for the pool."""
    def noted() -> list[dict]:
        return [r for r in stack.runs("dmi_mirror_50w") if r.get("note")]

    (run,) = stack.wait_for("the run's note", noted, timeout=300, every=3)
    assert run["note"] == ("DMI: tasks of this run use pool 'no_such_pool', which does not exist: they wait until it "
                           "does. Create it (Admin -> Pools, or `airflow pools set NAME SLOTS DESCRIPTION`) or change "
                           "source-pool in config.ini")
    assert run["state"] in ("queued", "running")
    scheduler = next(s for s in stack.services if s.name == "scheduler")
    assert "use pool 'no_such_pool', which does not exist" in scheduler.log.read_text()
    assert stack.api("GET", "/api/v2/pools/no_such_pool").status_code == 404


SEED_TARGET = "seed.example/seeded/app:1.0"
# A target's history: (run, status, digest, blobs copied/mounted/skipped, bytes)
SEED_RUNS = [("seed__1", "copied", "1", (3, 1, 0), 3 << 20), ("seed__2", "unchanged", "1", (0, 0, 0), 0),
             ("seed__3", "unchanged", "1", (0, 0, 0), 0), ("seed__4", "failed", None, (0, 0, 0), 0),
             ("seed__5", "copied", "2", (1, 0, 3), 1 << 20), ("seed__6", "unchanged", "2", (0, 0, 0), 0)]
MANY = 120  # more images than one page holds


def _seed(stack) -> None:  # type: ignore[no-untyped-def]
    """Six runs of one image in dmi_mirror_49w (copied, unchanged, a failure, a new digest), and many
    one-run images, recorded as the record task does."""
    from datetime import timedelta

    from dmi_provider.tracking.store import MirrorOutcome

    store = TrackingStore(stack.tracking)
    if store.history(target=SEED_TARGET):
        return
    start = datetime.now(UTC) - timedelta(days=3)
    for n, (run_id, status, digest, (copied, mounted, skipped), nbytes) in enumerate(SEED_RUNS):
        store.record(MirrorOutcome(
            dag_id="dmi_mirror_49w", run_id=run_id, section="seeded/app", source="seed.example/src/app:1.0",
            target=SEED_TARGET, status=status, target_digest=f"sha256:{digest * 64}" if digest else None,
            error="RegistryError: 503 from the source" if status == "failed" else None, bytes_transferred=nbytes,
            blobs_copied=copied, blobs_mounted=mounted, blobs_skipped=skipped, target_kind="registry",
            started_at=start + timedelta(hours=n), finished_at=start + timedelta(hours=n, minutes=1)))
    for i in range(MANY):
        store.record(MirrorOutcome(
            dag_id="dmi_mirror_49w", run_id="seed__many", section=f"many/img{i:03d}", source=f"src/img{i:03d}:1",
            target=f"seed.example/many/img{i:03d}:1", status="copied", target_digest=f"sha256:{i:064x}",
            finished_at=start))
    store.close()


def _failed_run(stack) -> dict:  # type: ignore[no-untyped-def]
    def failed() -> dict | None:
        runs = [r for r in stack.runs("dmi_mirror_49w") if r["state"] == "failed"]
        rows = [r for r in TrackingStore(stack.tracking).history(dag_id="dmi_mirror_49w", status="failed")
                if r["section"] == "broken/not-there"]
        return runs[0] if runs and rows else None

    return stack.wait_for("the broken DAG's failed run and its row", failed, timeout=300, every=3)


def test_image_mirror_pages_draw_the_history_and_mirror_now_starts_a_run(stack):
    """Chromium inside Airflow's UI: the state page's headline and per-image strips, an image's digest
    timeline and blob chart, the DAG tab's runs chart carry the recorded numbers; a failed row links to
    its task's log; "Mirror now" starts a run of that one section, which finishes. Screenshots (light and
    dark) are kept in tests/artifacts/."""
    from tests.rig.stack import PASSWORD, USER

    _seed(stack)
    broken = _failed_run(stack)
    store = TrackingStore(stack.tracking)
    state = store.state()
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = login(browser, stack.url, USER, PASSWORD)
        page.goto(f"{stack.url}/plugin/dmi-image-mirror")
        frame = plugin_frame(page, ".dmi-cards")
        cards = frame.query_selector(".dmi-cards")
        assert cards.get_attribute("data-images") == str(sum(1 for r in state if r["last_digest"]))
        assert cards.get_attribute("data-failing") == str(sum(1 for r in state if r["last_status"] == "failed"))
        assert int(cards.get_attribute("data-bytes")) == sum(r["bytes_transferred"] for r in store.history(limit=5000))
        pager = frame.query_selector(".pager")
        assert pager.get_attribute("data-pages") == str(-(-len(state) // 50))
        page.screenshot(path=str(ARTIFACTS / "ui-state.png"))

        # Sorted by failures, most first: the seeded image (1 of 6 runs failed) heads the page after the broken one.
        for direction in ("asc", "desc"):  # a click on the title sorts, a second one turns the order round
            frame.click("th a:has-text('Last 20 runs')")
            frame.wait_for_selector(f"th[data-sort={direction}]:has-text('Last 20 runs')")
        strip = frame.query_selector(f"tr:has(a:text-is('{SEED_TARGET}')) svg.dmi-strip")
        assert (strip.get_attribute("data-runs"), strip.get_attribute("data-copied"),
                strip.get_attribute("data-unchanged"), strip.get_attribute("data-failed")) == ("6", "2", "3", "1")
        assert len(strip.query_selector_all("rect")) == 6

        # An image's page: two digests on the timeline, six runs of blob counts.
        frame.click(f"a:text-is('{SEED_TARGET}')")
        frame.wait_for_selector("svg.dmi-timeline")
        lanes = frame.query_selector_all("g.dmi-digest")
        assert [(g.get_attribute("data-run"), g.get_attribute("data-runs")) for g in lanes] == [
            ("seed__1", "3"), ("seed__5", "2")]
        bars = frame.query_selector_all("svg.dmi-blobs g.dmi-bar-group")
        assert [(b.get_attribute("data-run"), b.get_attribute("data-copied"), b.get_attribute("data-mounted"),
                 b.get_attribute("data-skipped")) for b in bars] == [
            (r, str(c), str(m), str(s)) for r, _st, _d, (c, m, s), _b in SEED_RUNS]
        page.screenshot(path=str(ARTIFACTS / "ui-image.png"), full_page=True)

        # The DAG tab: a bar per run with its counts; the failed row links to the failed task's log.
        page.goto(f"{stack.url}/dags/dmi_mirror_49w/plugin/dmi-image-mirror-dag")
        frame = plugin_frame(page, "svg.dmi-runs")
        runs = {g.get_attribute("data-run"): (g.get_attribute("data-copied"), g.get_attribute("data-unchanged"),
                                              g.get_attribute("data-failed"))
                for g in frame.query_selector_all("svg.dmi-runs g.dmi-bar-group")}
        assert runs["seed__4"] == ("0", "0", "1") and runs["seed__5"] == ("1", "0", "0")
        assert runs["seed__many"] == (str(MANY), "0", "0") and runs[broken["dag_run_id"]] == ("0", "0", "1")
        page.screenshot(path=str(ARTIFACTS / "ui-dag-tab.png"))
        log_link = frame.query_selector("tr:has(td:text-is('failed')) a.log, tr:has(.failed) a.log")
        assert log_link is not None
        href = log_link.get_attribute("href")
        (pull,) = {ti["task_id"] for ti in stack.api(
            "GET", f"/api/v2/dags/dmi_mirror_49w/dagRuns/{broken['dag_run_id']}/taskInstances").json()[
            "task_instances"] if ti["task_id"].endswith(".pull")}  # its lane's group: <source pool>.pull
        assert href.endswith(f"/runs/{quote(broken['dag_run_id'], safe='')}/tasks/{pull}/mapped/0")
        log_link.click()
        page.wait_for_url(f"**/tasks/{pull}/mapped/0**", timeout=60_000, wait_until="commit")
        page.get_by_text("section 'broken/not-there'", exact=False).first.wait_for(timeout=60_000)  # the log

        # Mirror now, for one section: a run with sections=[that section] starts and finishes.
        page.goto(f"{stack.url}/plugin/dmi-image-mirror")
        frame = plugin_frame(page, "button.mirror-now")
        before = {r["dag_run_id"] for r in stack.runs("dmi_mirror")}
        frame.click("tr:has(a:text-is('aws/proxyv2')) button.mirror-now")
        banner = frame.wait_for_selector("p.banner[data-run]", timeout=60_000)
        run_id = banner.get_attribute("data-run")
        assert banner.get_attribute("data-dag") == "dmi_mirror" and run_id not in before
        run = stack.wait_run("dmi_mirror", run_id)
        assert run["state"] == "success" and run["conf"] == {"sections": ["aws/proxyv2"], "force": False}
        assert run["note"].startswith("Mirror now: aws/proxyv2")
        rows = [r for r in store.history(dag_id="dmi_mirror", limit=500) if r["run_id"] == run_id]
        assert [r["section"] for r in rows] == ["aws/proxyv2"]

        dark = login(browser, stack.url, USER, PASSWORD, color_scheme="dark")
        dark.goto(f"{stack.url}/plugin/dmi-image-mirror")
        frame = plugin_frame(dark, ".dmi-cards")
        assert frame.evaluate("document.documentElement.classList.contains('dark')")
        assert frame.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"
        dark.screenshot(path=str(ARTIFACTS / "ui-state-dark.png"))
    for name in ("ui-state", "ui-image", "ui-dag-tab", "ui-state-dark"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def test_tables_sort_and_page_and_only_triggerers_see_mirror_now(stack):
    _seed(stack)
    total = len(TrackingStore(stack.tracking).state())
    first = stack.api("GET", "/dmi/", params={"sort": "target", "dir": "desc"}).text
    last = stack.api("GET", "/dmi/", params={"sort": "target", "dir": "desc", "page": -(-total // 50)}).text
    assert f'data-rows="{total}" data-shown="50"' in first
    assert first.index(f"seed.example/many/img{MANY - 1:03d}:1") < first.index(f"seed.example/many/img{MANY - 2:03d}:1")
    assert "seed.example/many/img000:1" not in first and "mirror-now" in first
    assert f'data-shown="{total - 50 * (-(-total // 50) - 1)}"' in last

    viewer = stack.token_for(VIEWER)
    as_viewer = httpx.get(f"{stack.url}/dmi/", headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    assert as_viewer.status_code == 200 and "dmi-cards" in as_viewer.text
    assert "mirror-now" not in as_viewer.text  # may read, may not trigger: no button
    before = len(stack.runs("dmi_mirror"))
    refused = httpx.post(f"{stack.url}/dmi/trigger", headers={"Authorization": f"Bearer {viewer}"}, timeout=30,
                         data={"dag_id": "dmi_mirror", "section": "aws/proxyv2", "force": "false"})
    assert refused.status_code == 403 and "You may not start runs of dmi_mirror" in refused.text
    for header in ({"Origin": "http://elsewhere.example"}, {"Sec-Fetch-Site": "cross-site"}):
        forged = stack.api("POST", "/dmi/trigger", headers=header,  # the admin's credentials, another site's form
                           data={"dag_id": "dmi_mirror", "section": "aws/proxyv2", "force": "false"})
        assert forged.status_code == 403 and "this Airflow's own pages" in forged.text
    assert len(stack.runs("dmi_mirror")) == before  # nothing started
    anonymous = httpx.post(f"{stack.url}/dmi/trigger", data={"dag_id": "dmi_mirror", "section": "aws/proxyv2"},
                           timeout=30)
    assert anonymous.status_code in (401, 403)


RACE = '''
import sys
from sqlalchemy import event, insert, select, text, update
from airflow import settings
from airflow.models.dagrun import DagRun
from airflow.models.pool import Pool
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from dmi_provider import listeners

NAME, raced = "dmi_race_pool", []


@event.listens_for(Pool, "before_insert")
def the_other_scheduler_first(mapper, connection, target):  # it saw the pool missing too, and committed first
    if not raced:
        raced.append(target.pool)
        with settings.engine.begin() as other:
            other.execute(insert(Pool.__table__).values(pool=target.pool, slots=3, include_deferred=False,
                                                        description="the other scheduler"))


with create_session() as theirs:  # the scheduler's own session, its transaction open
    run = theirs.scalars(select(DagRun).where(DagRun.dag_id == sys.argv[1]).limit(1)).one()
    theirs.execute(update(TaskInstance).where(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
                   .values(pool=NAME))  # this run's tasks now use a pool nobody made yet
    listeners.on_dag_run_running(run, "")
    theirs.execute(text("SELECT 1"))  # raises PendingRollbackError if the listener broke the transaction
    print("raced", raced, "slots", theirs.scalars(select(Pool.slots).where(Pool.pool == NAME)).all())
    theirs.rollback()  # leave the run's tasks as they were
'''


def test_two_schedulers_creating_one_pool_leave_the_losers_transaction_whole(stack):
    """Issue 26 item 5: on PostgreSQL (HA schedulers) the listener writes in a session of its own."""
    stack.wait_for("a run of dmi_mirror_52w", lambda: stack.runs("dmi_mirror_52w"), timeout=300)
    done = subprocess.run([str(Path(AIRFLOW).with_name("python")), "-c", RACE, "dmi_mirror_52w"], env=stack.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "raced ['dmi_race_pool'] slots [3]" in done.stdout  # one pool, the winner's
