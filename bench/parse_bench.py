"""Parse benchmark: how long build_dags takes for big configs, against a plain DAG of the same shape.

Run by hand from the repository root (after `make venv`):

    .venv/bin/python bench/parse_bench.py                    # 100, 500, 1000 and 2000 sections
    .venv/bin/python bench/parse_bench.py --sizes 500 --runs 5

Each size runs in a fresh interpreter: imports first (not timed, reported apart), then `build_dags` of a
config with N sections (timed), then the peer: a DAG with the same task groups of five EmptyOperators each,
with no params (what Airflow itself costs for that many tasks). Median of --runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
started = time.perf_counter()
from airflow.sdk import DAG, task_group
from airflow.providers.standard.operators.empty import EmptyOperator
from dmi_provider.dag_factory import build_dags
imports = time.perf_counter() - started
path, n = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
dags = build_dags(path)
dmi = time.perf_counter() - t0
tasks = sum(len(d.task_dict) for d in dags.values())
t0 = time.perf_counter()
with DAG("peer", schedule=None) as dag:
    for i in range(n):
        @task_group(group_id=f"g{i}")
        def group():
            a, b, c, d, e = (EmptyOperator(task_id=t) for t in ("pull", "tag", "ensure_repository", "push", "record"))
            a >> b >> c >> d >> e
        group()
peer = time.perf_counter() - t0
print(json.dumps({"imports": imports, "dmi": dmi, "peer": peer, "tasks": tasks}))
"""


def config(n: int) -> str:
    lines = ["[DEFAULT]", "refresh = 1w", "project = mirror", ""]
    for i in range(n):
        lines += [f"[image-{i}]", f"image = team{i % 50}/app{i}", "tag = 1.0", ""]
    return "\n".join(lines)


def run(n: int, folder: Path) -> dict:
    path = folder / f"config-{n}.ini"
    path.write_text(config(n))
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(n)], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                         "AIRFLOW_HOME": str(folder / "home")}, timeout=900)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,1000,2000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            found = [run(n, Path(tmp)) for _ in range(args.runs)]
            row = {k: statistics.median(f[k] for f in found) for k in ("imports", "dmi", "peer")}
            rows.append((n, found[0]["tasks"], row))
    base = rows[0][2]["dmi"] / rows[0][0]
    print(f"{'sections':>8} {'tasks':>6} {'dmi s':>8} {'ms/sect':>8} {'vs linear':>9} {'peer s':>8} "
          f"{'dmi/peer':>8} {'imports s':>9}")
    for n, tasks, row in rows:
        print(f"{n:>8} {tasks:>6} {row['dmi']:>8.3f} {1000 * row['dmi'] / n:>8.2f} "
              f"{row['dmi'] / (base * n):>8.2f}x {row['peer']:>8.3f} {row['dmi'] / row['peer']:>7.2f}x "
              f"{row['imports']:>9.2f}")
    print("goal: 500 sections < 0.3 s after imports; 'vs linear' stays near 1.0x up to 2000")


if __name__ == "__main__":
    main()
