"""`make demo`: the main job end to end, offline, on this machine alone.

A registry seeded with generated images stands in for Docker Hub (token auth, rate-limit headers);
moto and a registry stand in for ECR. A config.ini in the original format (plus a multi-arch section)
is mirrored by the dmi_mirror DAG through Airflow on SQLite, twice: the second run finds everything
unchanged and pulls nothing from the source.

`make demo-ui` (`demo.py --ui`): the same stand-ins, then Airflow itself (api-server, scheduler,
dag-processor, triggerer on SQLite) mirrors the config three times so the history has a story (copied;
unchanged with one failure; a new digest at the source copied), and stays up with the Image mirror pages
until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rig.airflow import AirflowEnv  # noqa: E402
from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Fault, Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402
from tests.rig.services import MOTO_REGION, EcrStandIn  # noqa: E402

DMI = str(Path(sys.executable).with_name("dmi"))


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


CONFIG = """\
    # The original format; the extension keys point at the local stand-ins.
    [DEFAULT]
    refresh = 1w
    source-registry = {hub}
    target-registry = {ecr}
    insecure-registries = {hub}, {ecr}

    [aws/proxyv2]
    image = proxyv2
    tag = 1.7.0
    source-repository = istio
    project = istio

    [aws/pilot]
    image = pilot
    tag = 1.7.0
    source-repository = istio
    project = istio

    # A multi-arch image. On docker.io, "alpine" alone means library/alpine; the stand-in is
    # not docker.io, so the namespace is spelled out.
    [alpine]
    image = alpine
    source-repository = library
    tag = 3.20
    platforms = linux/amd64, linux/arm64
    project = mirror
"""


def main(argv: list[str]) -> int:
    ui = "--ui" in argv
    work = Path(tempfile.mkdtemp(prefix="dmi-demo-"))
    say(f"starting the stand-ins (work folder {work})")
    hub_registry = Registry("hub", work / "hub", auth="token", users={"publisher": "publisher-pass"}).start()
    hub = Proxy(hub_registry.url, ratelimit=100).start()
    ecr = EcrStandIn.start(work / "ecr")
    try:
        factory = ImageFactory(seed=7)
        seeder = RigClient(hub_registry.url, ("publisher", "publisher-pass"))
        base = factory.layer(2 << 20)
        push(seeder, "istio/proxyv2", "1.7.0", factory.image(layers=[base, factory.layer(1 << 20)]))
        push(seeder, "istio/pilot", "1.7.0", factory.image(layers=[base, factory.layer(1 << 20)]))
        push(seeder, "library/alpine", "3.20", factory.multiarch(("linux/amd64", "linux/arm64"), media="oci"))
        print(f"Docker Hub stand-in: {hub.host} (token auth, rate limit 100 pulls)")
        print(f"ECR stand-in: moto {ecr.moto.endpoint}, registry {ecr.registry.host}")

        config = work / "config.ini"
        config.write_text(textwrap.dedent(CONFIG).format(hub=hub.host, ecr=ecr.registry.host))
        say(f"config.ini ({config})")
        print(config.read_text())
        subprocess.run([DMI, "validate", str(config)], check=True)
        env = {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "demo", "password": "demo",
                                                    "extra": {"region_name": MOTO_REGION,
                                                              "endpoint_url": ecr.moto.endpoint}}),
            "AWS_DEFAULT_REGION": MOTO_REGION, "AWS_ACCOUNT": ecr.account, "DB_PATH": str(work / "tracking.db"),
        }
        if ui:
            def change_at_source() -> None:
                push(seeder, "istio/proxyv2", "1.7.1-rebuilt",
                     image := factory.image(layers=[base, factory.layer(1 << 20)]))
                push(seeder, "istio/proxyv2", "1.7.0", image)  # the same tag, a new digest

            return serve_ui(work, config, env, hub, change_at_source)
        return run_twice(work, config, env, hub, ecr)
    finally:
        hub.stop()
        hub_registry.stop()
        ecr.stop()


def run_twice(work: Path, config: Path, env: dict[str, str], hub: Proxy, ecr: EcrStandIn) -> int:
    airflow = AirflowEnv(work / "airflow")
    history = [DMI, "history", "--db", f"sqlite:///{work / 'tracking.db'}"]
    for attempt in ("first run: everything is copied", "second run: everything is unchanged"):
        hub.reset()
        say(f"airflow dags test dmi_mirror ({attempt})")
        run = airflow.run("dmi_mirror", config, env=env)
        print(f"DAG run {run['run_id']}: {run['state']}")
        for task, state in sorted(run["tasks"].items()):
            if task.startswith("plan_"):  # the planning task: HEADs for every image, rows for the unchanged
                print(f"  {task:32} {state}")
        for image, steps in sorted(run["steps"].items()):  # what changed: its own task instances
            print(f"  {image:32} " + " -> ".join(f"{step} {steps[step]}" for step in
                                                 ("pull", "tag", "ensure_repository", "push", "record")))
        if not run["steps"]:
            print("  (nothing changed: no copy task ran)")
        print(f"source requests: {hub.count()} ({hub.count('GET', 'manifest')} manifest GETs = pulls counted "
              f"by Docker Hub, {hub.count('GET', 'blob')} blob GETs, {hub.count('HEAD', 'manifest')} HEADs)")
        if run["state"] != "success":
            print(run["log"][-6000:])
            return 1
        subprocess.run(history, check=True)

    say("current state")
    subprocess.run([*history, "--state"], check=True)
    repos = ecr.boto3_client().describe_repositories()["repositories"]
    print("ECR repositories: " + ", ".join(sorted(r["repositoryName"] for r in repos)))
    say("the same in the Airflow UI")
    print(textwrap.dedent("""\
        `make demo-ui` runs this demo inside Airflow and keeps it up with the Image mirror pages.
        With your own config.ini and AWS connection:
          export AIRFLOW_HOME=~/airflow DMI_CONFIG=$PWD/config.ini
          export AIRFLOW__CORE__DAGS_FOLDER=""" + str(ROOT / "dags") + """
          .venv/bin/airflow standalone     # then open http://localhost:8080, DAG dmi_mirror
        The demo's stand-in registries stop when this script ends."""))
    return 0


DEMO_USER, DEMO_PASSWORD = "admin", "admin"


def serve_ui(work: Path, config: Path, env: dict[str, str], hub: Proxy, change_at_source) -> int:  # type: ignore[no-untyped-def]
    """Airflow with the DAGs and the plugin, three runs with a story, then up until Ctrl-C."""
    from tests.rig.stack import AirflowStack

    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    port = int(os.environ.get("DMI_DEMO_PORT") or 0) or (8080 if _free(8080) else 0) or None
    airflow = AirflowStack(work / "airflow", f"sqlite:///{work / 'airflow' / 'airflow.db'}", config,
                           {**env, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                            "AIRFLOW__CORE__PARALLELISM": "4"},
                           port=port, users={DEMO_USER: ("admin", DEMO_PASSWORD)})
    say(f"starting Airflow on {airflow.url} (api-server, scheduler, dag-processor, triggerer; SQLite)")
    airflow.start()
    try:
        story = [("first run: everything is copied", None),
                 ("second run: unchanged, and pilot fails (the source answers 404 for it)", "fail"),
                 ("third run: a new digest of proxyv2 at the source is copied", "change")]
        for n, (what, twist) in enumerate(story):
            if stopping.is_set():
                break
            fault = hub.inject(Fault(path="istio/pilot/manifests", status=404, times=None,
                                     body=b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
                                     headers={"Content-Type": "application/json"})) if twist == "fail" else None
            if twist == "change":
                change_at_source()
            say(what)
            run = _run(airflow, first=n == 0)
            if fault is not None:
                hub.faults.remove(fault)
            print(f"DAG run {run['dag_run_id']}: {run['state']}")
        if not stopping.is_set():
            say("the Image mirror pages are up")
            print(f"  URL:    {airflow.url}/plugin/dmi-image-mirror   (Browse -> Image mirror)")
            print(f"  login:  {DEMO_USER} / {DEMO_PASSWORD}")
            print("  DAG:    dmi_mirror (its Image mirror tab shows the runs); Mirror now starts a run of one section")
            print("Press Ctrl-C to stop Airflow and the stand-ins.", flush=True)
            stopping.wait()
        say("stopping")
        return 0
    finally:
        airflow.stop()


def _run(airflow, first: bool) -> dict:  # type: ignore[no-untyped-def]
    """The first run comes from unpausing the DAG (its schedule); the others are triggered."""
    airflow.wait_for("the DAG parsed", lambda: airflow.api("GET", "/api/v2/dags/dmi_mirror").status_code == 200,
                     timeout=180)
    if first:
        airflow.api("PATCH", "/api/v2/dags/dmi_mirror", json={"is_paused": False}).raise_for_status()
        run = airflow.wait_for("the first run", lambda: (airflow.runs("dmi_mirror") or [None])[0], timeout=180)
    else:
        run = airflow.api("POST", "/api/v2/dags/dmi_mirror/dagRuns", json={"logical_date": None}).json()
    return airflow.wait_run("dmi_mirror", run["dag_run_id"], timeout=600)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
