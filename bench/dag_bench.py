"""DAG benchmark: what the Airflow tasks add to the copy. `dmi_mirror` against a no-op DAG of the same shape
plus skopeo's copy alone, on the same images, in one run.

Run by hand from the repository root (after `make venv`; --mode scheduler needs PostgreSQL, as `make test`):

    .venv/bin/python bench/dag_bench.py                      # airflow dags test
    .venv/bin/python bench/dag_bench.py --mode scheduler     # api-server, scheduler, dag-processor, LocalExecutor

The no-op DAG (`noop_mirror`) has the same task groups, mapped the same way, whose five tasks are Python
callables that do nothing: what Airflow costs for that many tasks. skopeo copies each image once
(`skopeo copy --all --preserve-digests`). Goal: dmi_mirror <= 1.1 x (skopeo + no-op).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
NOOP_DAG = '''"""A no-op DAG of dmi_mirror's shape (airflow, dag): the benchmark's peer."""
from airflow.sdk import DAG, task, task_group
from dmi_provider.config import load_config
from dmi_provider.dag_factory import START_DATE, config_path

config = load_config(config_path(__file__))
with DAG("noop_mirror", schedule=None, start_date=START_DATE, catchup=False) as dag:
    for spec in config.sections:
        @task_group(group_id=spec.group_id)
        def group(pair):
            @task
            def nothing(pair):
                return None

            a, b, c, d, e = (nothing.override(task_id=t)(pair) for t in ("pull", "tag", "ensure_repository",
                                                                           "push", "record"))
            a >> b >> c >> d >> e

        group.expand(pair=[list(p) for p in spec.pairs()])
'''


def images(hub: Registry, count: int, base_mib: int, layer_mib: int) -> list[str]:
    factory = ImageFactory(seed=11)
    base = factory.layer(base_mib << 20)
    seeder = RigClient(hub.url, ("bench", "bench-pass"))
    names = []
    for i in range(count):
        image = (factory.multiarch(base=base, size=layer_mib << 19) if i % 2 else
                 factory.image(layers=[base, factory.layer(layer_mib << 20)]))
        push(seeder, f"bench/app{i}", "1.0", image)
        names.append(f"bench/app{i}")
    seeder.close()
    return names


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def scheduler_runs(work: Path, config: Path, dags: Path, env: dict[str, str]) -> dict[str, float]:
    """Each DAG triggered once through the REST API of a real deployment; the run's own start and end."""
    from datetime import datetime

    from tests.rig.services import Postgres
    from tests.rig.stack import AirflowStack

    postgres = Postgres.start()
    stack = AirflowStack(work / "stack", postgres.database("bench_airflow"), config,
                         env | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}).start()
    try:
        for dag_id in ("noop_mirror", "dmi_mirror"):
            stack.wait_for(f"DAG {dag_id}", lambda d=dag_id: stack.api("GET", f"/api/v2/dags/{d}").status_code == 200)
        out: dict[str, float] = {}
        # The first run of a fresh deployment also pays for its warm-up (workers, first parse): a no-op run
        # first, not counted; then the no-op and dmi_mirror (the first copy of the images), each measured.
        for label, dag_id in (("warm-up", "noop_mirror"), ("noop_mirror", "noop_mirror"), ("dmi_mirror", "dmi_mirror")):
            r = stack.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
            run = stack.wait_run(dag_id, r.json()["dag_run_id"], timeout=1200)
            if run["state"] != "success":
                raise SystemExit(f"{dag_id} run {run['state']}:\n{stack.logs()[-5000:]}")
            start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
            out[label] = (end - start).total_seconds()
        return out
    finally:
        stack.stop()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("test", "scheduler"), default="test")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--base-mib", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=16)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dmi-dag-bench-"))
    hub = Registry("hub", work / "hub", auth="token", users={"bench": "bench-pass"}).start()
    source = Proxy(hub.url, ratelimit=100000).start()
    targets = {name: Registry(f"target-{name}", work / f"target-{name}").start() for name in ("dmi", "skopeo")}
    print(f"building {args.images} images", file=sys.stderr)
    names = images(hub, args.images, args.base_mib, args.layer_mib)

    config = work / "config.ini"
    dmi_target = targets["dmi"].host
    config.write_text(f"[DEFAULT]\nrefresh = 1d\nsource-registry = {source.host}\ntag = 1.0\nproject = mirror\n"
                      f"target = registry\ntarget-registry = {dmi_target}\n"
                      f"insecure-registries = {source.host}, {dmi_target}\n\n"
                      + "".join(f"[app{i}]\nimage = {name}\n\n" for i, name in enumerate(names)))
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "dmi_mirror.py", dags / "dmi_mirror.py")
    (dags / "noop_mirror.py").write_text(NOOP_DAG)
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PYTHONPATH": str(ROOT), "DMI_CONFIG": str(config),
           "AIRFLOW_HOME": str(work / "home"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "DMI_CACHE_DIR": str(work / "dmi-cache"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work / 'airflow.db'}", "DB_PATH": str(work / "t.db")}

    skopeo_target = targets["skopeo"].host
    started = time.monotonic()
    for name in names:
        timed(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--insecure-policy", "--src-tls-verify=false",
               "--dest-tls-verify=false", f"docker://{source.host}/{name}:1.0",
               f"docker://{skopeo_target}/mirror/{name}:1.0"], env)
    skopeo = time.monotonic() - started
    if args.mode == "test":
        timed([AIRFLOW, "db", "migrate"], env)
        noop = timed([AIRFLOW, "dags", "test", "noop_mirror"], env)
        source.reset()
        dmi = timed([AIRFLOW, "dags", "test", "dmi_mirror"], env)
    else:
        runs = scheduler_runs(work, config, dags, {k: v for k, v in env.items()
                                                   if not k.startswith("AIRFLOW__DATABASE")})
        noop, dmi = runs["noop_mirror"], runs["dmi_mirror"]
    for service in (source, hub, *targets.values()):
        service.stop()

    how = ("airflow dags test" if args.mode == "test" else
           "scheduler + LocalExecutor (each run's start to end, after a no-op warm-up run)")
    print(f"\n{args.images} images ({args.base_mib} MiB shared base + {args.layer_mib} MiB own, half 2-platform), "
          f"{5 * args.images} tasks; {how}\n")
    print("| what | wall s | x (skopeo + no-op) |")
    print("| --- | ---: | ---: |")
    peer = skopeo + noop
    for what, seconds in (("skopeo copy, image by image", skopeo), ("no-op DAG, same shape", noop),
                          ("skopeo + no-op", peer), ("dmi_mirror", dmi)):
        print(f"| {what} | {seconds:.2f} | {seconds / peer:.2f} |")
    print("\ngoal: dmi_mirror <= 1.1 x (skopeo + no-op)")


if __name__ == "__main__":
    main()
