"""`make demo`: the main job end to end, offline, on this machine alone.

A registry seeded with generated images stands in for Docker Hub (token auth, rate-limit headers);
moto and a registry stand in for ECR. A config.ini in the original format (plus a multi-arch section)
is mirrored by the dmi_mirror DAG through Airflow on SQLite, twice: the second run finds everything
unchanged and pulls nothing from the source.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rig.airflow import AirflowEnv  # noqa: E402
from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402
from tests.rig.services import MOTO_REGION, EcrStandIn  # noqa: E402

DMI = str(Path(sys.executable).with_name("dmi"))


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
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
        config.write_text(textwrap.dedent(f"""\
            # The original format; the extension keys point at the local stand-ins.
            [DEFAULT]
            refresh = 1w
            source-registry = {hub.host}
            target-registry = {ecr.registry.host}
            insecure-registries = {hub.host}, {ecr.registry.host}

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
        """))
        say(f"config.ini ({config})")
        print(config.read_text())
        subprocess.run([DMI, "validate", str(config)], check=True)

        airflow = AirflowEnv(work / "airflow")
        env = {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "demo", "password": "demo",
                                                    "extra": {"region_name": MOTO_REGION,
                                                              "endpoint_url": ecr.moto.endpoint}}),
            "AWS_DEFAULT_REGION": MOTO_REGION, "AWS_ACCOUNT": ecr.account, "DB_PATH": str(work / "tracking.db"),
        }
        history = [DMI, "history", "--db", f"sqlite:///{work / 'tracking.db'}"]
        for attempt in ("first run: everything is copied", "second run: everything is unchanged"):
            hub.reset()
            say(f"airflow dags test dmi_mirror ({attempt})")
            run = airflow.run("dmi_mirror", config, env=env)
            states = run["tasks"]
            print(f"DAG run {run['run_id']}: {run['state']}")
            for task in sorted(states):
                print(f"  {task:32} {states[task]}")
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
        print(textwrap.dedent(f"""\
            With your own config.ini and AWS connection:
              export AIRFLOW_HOME=~/airflow DMI_CONFIG=$PWD/config.ini
              export AIRFLOW__CORE__DAGS_FOLDER={ROOT / 'dags'}
              .venv/bin/airflow standalone     # then open http://localhost:8080, DAG dmi_mirror
            The demo's stand-in registries stop when this script ends."""))
        return 0
    finally:
        hub.stop()
        hub_registry.stop()
        ecr.stop()


if __name__ == "__main__":
    raise SystemExit(main())
