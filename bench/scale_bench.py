"""Scale benchmark: what a run costs for many small images, cold and warm, with the defaults users get.

Run by hand from the repository root (after `make venv`; the deployment rows need PostgreSQL, as `make test`):

    .venv/bin/python bench/scale_bench.py                         # 100 images, 5 tags per repository
    .venv/bin/python bench/scale_bench.py --images 500
    .venv/bin/python bench/scale_bench.py --tags-per-repo 1       # every image its own repository
    .venv/bin/python bench/scale_bench.py --no-deployment         # skopeo and dmi sync only

The source is a token-auth registry (Docker Hub's stand-in) behind the rig's counting proxy; each tool writes
into a fresh registry of its own. Images: a 256 KiB shared base and 32 KiB of their own, one platform. Rows:
- `skopeo sync --src yaml` (the peer), cold then warm (the median of three warm runs, for each sync row);
- `dmi sync CONFIG` with the defaults (history on, referrers on): the headline; extra, labelled rows with
  `referrers = false` and `--no-history`;
- the `dmi_mirror` DAG through a real deployment (api-server, scheduler, dag-processor, triggerer,
  LocalExecutor with parallelism 8, PostgreSQL for Airflow and for history): the first (scheduled) run is
  cold, a triggered one warm; the run's own start to end, and the task instances that ran in a worker.
Then the time a task process spends building its DAG (Airflow's parsing context set, as a worker parses)
for 100, 500 and 2000 sections, against a full build (the DAG processor's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from copy_bench import DMI, measure  # noqa: E402

from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402

WARM_RUNS = 3
PARSE_CHILD = r"""
import json, os, sys, time
from dmi_provider.dag_factory import build_dags
path, task = sys.argv[1], sys.argv[2]
if task:
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = "dmi_mirror"
    os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = task
t0 = time.perf_counter()
dags = build_dags(path)
print(json.dumps({"seconds": time.perf_counter() - t0, "tasks": sum(len(d.task_dict) for d in dags.values())}))
"""


@dataclass
class Row:
    what: str
    run: str
    seconds: float
    source_requests: int
    heads: int
    manifest_gets: int
    workers: int | None = None  # task instances that ran in a worker (deployment rows)
    note: str = ""


def seed(hub: Registry, repos: int, tags: int) -> dict[str, list[str]]:
    factory = ImageFactory(seed=5)
    base = factory.layer(256 << 10)
    seeder = RigClient(hub.url, ("bench", "bench-pass"))
    out: dict[str, list[str]] = {}
    for r in range(repos):
        for t in range(tags):
            push(seeder, f"scale/app{r}", f"1.{t}", factory.image(layers=[base, factory.layer(32 << 10)]))
            out.setdefault(f"scale/app{r}", []).append(f"1.{t}")
    seeder.close()
    return out


def config_text(images: dict[str, list[str]], source: str, target: str, extra: str = "") -> str:
    head = (f"[DEFAULT]\nrefresh = 1w\nsource-registry = {source}\nproject = mirror\ntarget = registry\n"
            f"target-registry = {target}\ninsecure-registries = {source}, {target}\n{extra}\n")
    return head + "".join(f"[{repo.split('/')[1]}-{tag}]\nimage = {repo}\ntag = {tag}\n\n"
                          for repo, tags in images.items() for tag in tags)


def sync_rows(work: Path, images: dict[str, list[str]], source: Proxy) -> list[Row]:
    rows: list[Row] = []
    runs = [("skopeo sync", "", []), ("dmi sync (defaults)", "", []),
            ("dmi sync, referrers = false", "referrers = false", []), ("dmi sync, --no-history", "", ["--no-history"])]
    for n, (what, extra, flags) in enumerate(runs):
        registry = Registry(f"target{n}", work / f"target{n}").start()
        target = Proxy(registry.url).start()
        if what.startswith("skopeo"):
            spec = work / "sync.yaml"
            spec.write_text(f"{source.host}:\n  tls-verify: false\n  images:\n"
                            + "".join(f"    {repo}: {json.dumps(tags)}\n" for repo, tags in images.items()))
            argv = ["skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                    "--dest-tls-verify=false", "--retry-times", "0", str(spec), f"{target.host}/mirror"]
        else:
            config = work / f"sync{n}.ini"
            config.write_text(config_text(images, source.host, target.host, extra))
            argv = [DMI, "sync", "-q", *flags, str(config)]
        env = os.environ | {"DMI_CACHE_DIR": str(work / f"cache{n}"), "AIRFLOW_HOME": str(work / f"home{n}"),
                            "DB_PATH": str(work / f"sync{n}.db")}
        for run in ("cold", "warm"):
            print(f"{what} ({run})...", file=sys.stderr)
            times = []
            for _ in range(1 if run == "cold" else WARM_RUNS):  # warm: the median of a few (a shared machine)
                source.reset()
                times.append(measure([argv], env=env)[0])
            rows.append(Row(what, run, statistics.median(times), source.count(), source.count("HEAD"),
                            source.count("GET", "manifest")))
        target.stop()
        registry.stop()
    return rows


def deployment_rows(work: Path, images: dict[str, list[str]], source: Proxy, prefill: bool) -> tuple[list[Row], str]:
    from sqlalchemy import create_engine, text

    from tests.rig.services import Postgres
    from tests.rig.stack import AirflowStack

    registry = Registry("target-dag", work / "target-dag").start()
    config = work / "config.ini"
    config.write_text(config_text(images, source.host, registry.host))
    if prefill:  # the target filled by dmi sync: both DAG runs are warm (a cold run of 500 images is 2,000 tasks)
        print("filling the DAG's target with dmi sync...", file=sys.stderr)
        subprocess.run([DMI, "sync", "-q", "--no-history", str(config)], check=True,
                       env=os.environ | {"DMI_CACHE_DIR": str(work / "prefill-cache")})
    dags = work / "dags"
    dags.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dags" / "dmi_mirror.py", dags / "dmi_mirror.py")
    postgres = Postgres.start()
    tracking = postgres.database("bench_tracking")
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PYTHONPATH": str(ROOT), "DMI_CONFIG": str(config),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "DMI_CACHE_DIR": str(work / "dag-cache"),
           "AIRFLOW_CONN_DMI_TRACKING": tracking.replace("postgresql+psycopg2://", "postgresql://")}
    stack = AirflowStack(work / "stack", postgres.database("bench_airflow"), config, env).start()
    rows: list[Row] = []
    checks = ""
    try:
        stack.wait_for("dmi_mirror", lambda: stack.api("GET", "/api/v2/dags/dmi_mirror").status_code == 200)
        source.reset()
        first = stack.wait_for("the first (scheduled) run", lambda: (stack.runs("dmi_mirror") or [None])[0])
        for label in (("warm (first run)", "warm") if prefill else ("cold", "warm")):
            if label == "warm":
                source.reset()
                r = stack.api("POST", "/api/v2/dags/dmi_mirror/dagRuns", json={"logical_date": None})
                first = r.json()
            print(f"dmi_mirror DAG ({label})...", file=sys.stderr)
            run = stack.wait_run("dmi_mirror", first["dag_run_id"], timeout=3600)
            if run["state"] != "success":
                raise SystemExit(f"dmi_mirror {label} run {run['state']}:\n{stack.logs()[-5000:]}")
            start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
            tis: list[dict] = []
            while True:  # the API pages at 100
                page = stack.api("GET", f"/api/v2/dags/dmi_mirror/dagRuns/{run['dag_run_id']}/taskInstances",
                                 params={"limit": 100, "offset": len(tis)}).json()["task_instances"]
                tis += page
                if len(page) < 100:
                    break
            ran = sum(1 for ti in tis if ti.get("pid") or ti.get("hostname"))
            rows.append(Row("dmi_mirror DAG (deployment)", label, (end - start).total_seconds(), source.count(),
                            source.count("HEAD"), source.count("GET", "manifest"), ran))
            if label == "warm":
                engine = create_engine(tracking)
                with engine.connect() as conn:
                    unchanged = conn.execute(text("SELECT count(*) FROM dmi_mirror_history WHERE run_id = :r "
                                                  "AND status = 'unchanged'"), {"r": run["dag_run_id"]}).scalar()
                    states = conn.execute(text("SELECT count(*) FROM dmi_mirror_state")).scalar()
                engine.dispose()
                checks = f"warm run: {unchanged} `unchanged` history rows, {states} state rows"
    finally:
        stack.stop()
        postgres.stop()
        registry.stop()
    return rows, checks


def parse_rows(work: Path, sizes: list[int]) -> list[tuple[int, float, float, int, int]]:
    out = []
    for n in sizes:
        path = work / f"parse-{n}.ini"
        path.write_text("[DEFAULT]\nrefresh = 1w\nproject = mirror\n\n"
                        + "".join(f"[image-{i}]\nimage = team{i % 50}/app{i}\ntag = 1.0\n\n" for i in range(n)))
        found = []
        for task in ("docker_io.push", ""):
            done = subprocess.run([sys.executable, "-c", PARSE_CHILD, str(path), task], capture_output=True,
                                  text=True, cwd=ROOT, timeout=900,
                                  env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                       "AIRFLOW_HOME": str(work / "parse-home")})
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            found.append(json.loads(done.stdout.strip().splitlines()[-1]))
        out.append((n, found[0]["seconds"], found[1]["seconds"], found[0]["tasks"], found[1]["tasks"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--tags-per-repo", type=int, default=5)
    parser.add_argument("--no-deployment", action="store_true", help="skip the DAG through a deployment")
    parser.add_argument("--prefill", action="store_true",
                        help="fill the DAG's target with dmi sync first: its two runs are both warm")
    parser.add_argument("--parse-sizes", default="100,500,2000")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dmi-scale-bench-"))
    hub = Registry("hub", work / "hub", auth="token", users={"bench": "bench-pass"}).start()
    source = Proxy(hub.url, ratelimit=100000).start()
    repos = max(1, args.images // args.tags_per_repo)
    print(f"building {repos * args.tags_per_repo} images in {repos} repositories", file=sys.stderr)
    images = seed(hub, repos, args.tags_per_repo)
    count = sum(len(t) for t in images.values())
    try:
        rows = sync_rows(work, images, source)
        checks = ""
        if not args.no_deployment:
            more, checks = deployment_rows(work, images, source, args.prefill)
            rows += more
    finally:
        source.stop()
        hub.stop()
    parsed = parse_rows(work, [int(s) for s in args.parse_sizes.split(",") if s])

    print(f"\n{count} images in {repos} repositories ({args.tags_per_repo} tags each; 256 KiB shared base + 32 KiB "
          "own, one platform); loopback\n")
    print("| what | run | wall s | x skopeo sync | source requests | per image | HEADs | manifest GETs "
          "| task instances in a worker |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        peer = next(x for x in rows if x.what == "skopeo sync" and x.run == r.run.split(" ")[0])
        print(f"| {r.what} | {r.run} | {r.seconds:.2f} | {r.seconds / max(peer.seconds, 1e-9):.2f} | "
              f"{r.source_requests} | {r.source_requests / count:.2f} | {r.heads} | {r.manifest_gets} | "
              f"{'' if r.workers is None else r.workers} |")
    if checks:
        print(f"\n{checks}")
    print("\n| sections | task process builds its lane, s | tasks | full build (DAG processor), s | tasks |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, task_s, full_s, task_tasks, full_tasks in parsed:
        print(f"| {n} | {task_s:.3f} | {task_tasks} | {full_s:.3f} | {full_tasks} |")
    print("\ngoals: warm DAG run <= 15x skopeo sync warm, <= 1.2 source requests per image, 0 manifest GETs; "
          "dmi sync (defaults) <= 1.0x skopeo cold and warm; a task process builds its DAG in < 0.1 s")


if __name__ == "__main__":
    main()
