"""DMI on a Celery fleet: Debian's redis-server as the broker, PostgreSQL for metadata and tracking, the
api-server, scheduler, dag-processor and triggerer, and two `airflow celery worker`s with their own names,
queues and Docker daemons. Proves the blob memory the fleet shares, the docker engine's pinning, and a worker
lost with SIGKILL in the middle of a push."""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
from collections import Counter
from datetime import datetime

import docker
import pytest

from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.fleet import Redis, Worker, celery_env
from tests.rig.images import ImageFactory, push
from tests.rig.stack import AirflowStack

FLEET = tuple(f"app{i:02d}" for i in range(20))  # dmi_mirror: 20 sections sharing base layers
DOCKER = tuple(f"dk{i}" for i in range(4))  # dmi_mirror_51w: engine = docker over two daemons
BIG = 40 << 20  # dmi_mirror_50w: one image with a 40 MiB layer, pushed over a slow link
QUEUES = {"a": "dmi_docker_a", "b": "dmi_docker_b"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, postgres, hub_registry, open_registry, dockerd):
    from tests.rig.proxy import Proxy
    from tests.rig.services import Dockerd

    root = tmp_path_factory.mktemp("fleet")
    hub = Proxy(hub_registry.url).start()
    target = Proxy(open_registry.url).start()
    factory = ImageFactory(seed=1515)
    client = rig_client(hub_registry, HUB_USER)
    bases = [factory.raw_blob(3 << 20), factory.raw_blob(1 << 20)]
    images = {}
    for i, name in enumerate(FLEET):  # every image on the first base, every other one on the second too
        layers = [bases[0]] + ([bases[1]] if i % 2 else []) + [factory.raw_blob(96 << 10)]
        images[name] = factory.image(layers=layers)
        push(client, f"fleet/{name}", "1.0", images[name])
    shared = factory.layer(256 << 10)  # the docker engine needs real tar layers
    for name in DOCKER:
        images[name] = factory.image(layers=[shared, factory.layer(64 << 10)])
        push(client, f"fleet/{name}", "1.0", images[name])
    images["big"] = factory.image(layers=[factory.raw_blob(BIG)])
    push(client, "fleet/big", "1.0", images["big"])

    config = root / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        target = registry
        target-registry = {target.host}
        insecure-registries = {hub.host} {target.host}
        source-repository = fleet
        project = fleet-mirror
        tag = 1.0
        target-uploads = 3
    """) + "".join(f"\n[fleet/{name}]\nimage = {name}\n" for name in FLEET)
        + "".join(f"\n[docker/{name}]\nimage = {name}\nrefresh = 51w\nengine = docker\nkeep-local-images = true\n"
                  f"docker-queue = {QUEUES['a']} {QUEUES['b']}\n" for name in DOCKER)
        + "\n[lost/big]\nimage = big\nrefresh = 50w\n")
    redis = Redis.start(root / "redis")
    metadata = postgres.database("fleet_airflow")
    tracking = postgres.database("fleet_tracking")
    env = {
        **celery_env(redis.url, "db+" + metadata),
        "AIRFLOW_CONN_DMI_TRACKING": tracking.replace("postgresql+psycopg2://", "postgres://"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # each test starts its DAG
        # A lost worker is noticed after 20 s without a heartbeat; its leases run out after 10 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "DMI_LEASE_SECONDS": "10",
    }
    stack = AirflowStack(root, metadata, config, env).start()
    second = Dockerd.start()
    daemons = {"a": dockerd, "b": second}
    workers = {}
    try:
        for name, daemon in daemons.items():
            workers[name] = Worker(stack, f"worker-{name}", f"default,{QUEUES[name]}",
                                   {"DOCKER_HOST": daemon.base_url}).start_ready()
    except Exception:
        stack.stop()
        raise
    stack.hub, stack.target, stack.images, stack.tracking = hub, target, images, tracking  # type: ignore[attr-defined]
    stack.workers, stack.daemons = workers, daemons  # type: ignore[attr-defined]
    stack.services.extend(workers.values())  # their logs in failures; stopped with the stack
    yield stack
    stack.stop()
    second.stop()
    redis.stop()
    hub.stop()
    target.stop()


def start_dag(stack: AirflowStack, dag_id: str, timeout: float = 400) -> dict:
    """Unpause a DAG (paused at creation) and wait for its first run to finish."""
    stack.wait_for(f"DAG {dag_id} parsed", lambda: stack.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200)
    assert stack.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = stack.wait_for(f"a run of {dag_id}", lambda: (stack.runs(dag_id) or [None])[0], timeout=120)
    return stack.wait_run(dag_id, run["dag_run_id"], timeout=timeout)


def task_instances(stack: AirflowStack, dag_id: str, run_id: str) -> list[dict]:
    r = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500})
    return r.json()["task_instances"]


def blob_gets(proxy) -> Counter:  # type: ignore[no-untyped-def]
    """Successful blob GETs per digest, as the registry behind the proxy served them."""
    return Counter(h.path.rsplit("/", 1)[1] for h in proxy.hits
                   if h.method == "GET" and h.kind == "blob" and h.status == 200)


def test_twenty_sections_on_two_workers_read_each_blob_once(fleet):
    run = start_dag(fleet, "dmi_mirror")
    assert run["state"] == "success", fleet.logs()
    tis = task_instances(fleet, "dmi_mirror", run["dag_run_id"])
    # The registry engine's tag step is an EmptyOperator: the scheduler marks it done, no worker runs it.
    tags = [ti for ti in tis if ti["task_id"].endswith(".tag")]
    assert len(tags) == len(FLEET) and {(ti["state"], ti["hostname"]) for ti in tags} == {("success", "")}
    per_worker = Counter(ti["hostname"] for ti in tis if ti["state"] == "success" and ti not in tags)
    print(f"tasks per worker: {dict(per_worker)}")
    assert set(per_worker) == {"worker-a", "worker-b"}, per_worker
    pushes = Counter(ti["hostname"] for ti in tis if ti["task_id"].endswith(".push"))
    assert set(pushes) == {"worker-a", "worker-b"}, f"the pushes ran on one worker only: {pushes}"

    # Every image byte-exact at the target; each unique blob read from the source once across the fleet.
    target = rig_client(fleet.target)
    unique = set()
    for name in FLEET:
        image = fleet.images[name]
        got = target.get_manifest(f"fleet-mirror/{name}", "1.0")
        assert got.status_code == 200 and got.content == image.manifest, name
        unique.update(b.digest for b in image.blobs)
    gets = blob_gets(fleet.hub)
    print(f"source blob GETs: {sum(gets.values())} for {len(unique)} unique blobs; "
          f"peak uploads at the target: {fleet.target.max_in_flight['PUT upload']}")
    assert set(gets) == unique and set(gets.values()) == {1}, {d[:19]: n for d, n in gets.items() if n != 1}
    # target-uploads = 3: never more than three blob uploads at the target at once, whichever worker.
    assert 1 <= fleet.target.max_in_flight["PUT upload"] <= 3
    logs = "".join(w.log.read_text(errors="replace") for w in fleet.workers.values())
    task_logs = "".join(p.read_text(errors="replace") for p in (fleet.root / "home" / "logs").rglob("*.log"))
    assert "being written to" in task_logs or "mounted from" in task_logs, logs[-3000:]
    rows = TrackingStore(fleet.tracking).history(dag_id="dmi_mirror")
    assert sorted(r["section"] for r in rows) == sorted(f"fleet/{n}" for n in FLEET)
    assert {r["status"] for r in rows} == {"copied"}
    print(f"blobs copied/mounted/skipped: {sum(r['blobs_copied'] for r in rows)}/"
          f"{sum(r['blobs_mounted'] for r in rows)}/{sum(r['blobs_skipped'] for r in rows)}")


def test_the_docker_engine_keeps_a_sections_steps_on_one_daemon(fleet):
    run = start_dag(fleet, "dmi_mirror_51w")
    assert run["state"] == "success", fleet.logs()
    tis = task_instances(fleet, "dmi_mirror_51w", run["dag_run_id"])
    where: dict[str, set[tuple[str, str]]] = {}  # "[docker/dkN] 1.0" -> (worker, queue) of its steps
    for ti in tis:
        step = ti["task_id"].rsplit(".", 1)[-1]
        if step in ("pull", "tag", "push"):
            where.setdefault(ti["rendered_map_index"], set()).add((ti["hostname"], ti["queue"]))
    print(f"docker sections: { {g: sorted(w) for g, w in where.items()} }")
    assert all(len(w) == 1 for w in where.values()), where  # pull, tag and push: one worker, one queue
    assert {next(iter(w)) for w in where.values()} == {("worker-a", QUEUES["a"]), ("worker-b", QUEUES["b"])}
    # What each daemon holds (keep-local-images): exactly the images of its worker's sections.
    for name, daemon in fleet.daemons.items():
        api = docker.APIClient(base_url=daemon.base_url)
        held = {t.split("/")[-1].split(":")[0] for i in api.images() for t in (i.get("RepoTags") or [])
                if "fleet" in t}
        mine = {g.split("/", 1)[1].split("]")[0] for g, w in where.items() if next(iter(w))[0] == f"worker-{name}"}
        assert held == mine, (name, held, mine)
    rows = TrackingStore(fleet.tracking).history(dag_id="dmi_mirror_51w")
    assert sorted(r["status"] for r in rows) == ["copied"] * len(DOCKER)


def test_a_worker_killed_mid_push_is_replaced_and_the_image_lands_whole(fleet):
    image = fleet.images["big"]
    big = image.layers[0]
    fleet.target.reset()
    fleet.target.bytes_per_second = 3 << 20  # 40 MiB take ~13 s: time to lose a worker in the middle
    dag_id = "dmi_mirror_50w"
    stack = fleet
    stack.wait_for(f"DAG {dag_id} parsed", lambda: stack.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200)
    assert stack.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = stack.wait_for("the run", lambda: (stack.runs(dag_id) or [None])[0], timeout=120)
    run_id = run["dag_run_id"]

    def pushing() -> dict | None:  # the one push of the run's one changed image (after its planning task)
        ti = next((t for t in task_instances(stack, dag_id, run_id) if t["task_id"].endswith(".push")), {})
        return ti if ti.get("state") == "running" and stack.target.bytes_in > 12 << 20 else None

    ti = stack.wait_for("the push in the middle of the big layer", pushing, timeout=300, every=0.5)
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}"
    victim = stack.workers[ti["hostname"].removeprefix("worker-")]
    sent = stack.target.bytes_in
    killed_at = victim.kill()
    timeline = [("killed", killed_at, f"{victim.worker_name} ({sent >> 20} MiB of {BIG >> 20} MiB sent)")]

    # While it is dead: the tag is not there (never an incomplete image), and no history row yet.
    target = rig_client(stack.target)
    assert target.get_manifest("fleet-mirror/big", "1.0").status_code == 404
    assert TrackingStore(stack.tracking).history(dag_id=dag_id) == []

    def noticed() -> dict | None:
        now = stack.api("GET", path).json()
        return now if now.get("state") != "running" or now.get("try_number", 1) > 1 else None

    state = stack.wait_for("the lost task noticed", noticed, timeout=180, every=0.5)
    timeline.append(("noticed", time.time(), f"state {state['state']}, try {state['try_number']}"))
    assert target.get_manifest("fleet-mirror/big", "1.0").status_code == 404
    done = stack.wait_run(dag_id, run_id, timeout=400)
    assert done["state"] == "success", stack.logs()
    tries = stack.api("GET", f"{path}/tries").json()["task_instances"]
    for t in tries:
        timeline.append((f"try {t['try_number']} started", _ts(t["start_date"]),
                         f"on {t['hostname']}, ended {t['state']}"))
    survivor = next(w for w in stack.workers.values() if w is not victim)
    assert [t["hostname"] for t in tries] == [victim.worker_name, survivor.worker_name], tries
    assert tries[-1]["state"] == "success" and tries[0]["state"] != "success"
    timeline.append(("finished", _ts(tries[-1]["end_date"]), "run success"))
    print("lost-worker timeline:\n" + "\n".join(f"  +{at - killed_at:6.1f}s {what}: {detail}"
                                               for what, at, detail in sorted(timeline, key=lambda x: x[1])))

    # Byte-exact: the manifest as the source has it, the layer's bytes hash to its digest.
    got = target.get_manifest("fleet-mirror/big", "1.0")
    assert got.content == image.manifest
    data = target.get_blob("fleet-mirror/big", big.digest)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == big.digest and len(data) == BIG
    rows = TrackingStore(stack.tracking).history(dag_id=dag_id)
    assert len(rows) == 1, rows  # one row: no duplicate, no half row from the lost try
    assert rows[0]["status"] == "copied" and rows[0]["target_digest"] == image.digest
    assert rows[0]["blobs_copied"] + rows[0]["blobs_mounted"] + rows[0]["blobs_skipped"] == 2
    assert json.loads(got.content)["layers"][0]["size"] == BIG


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
