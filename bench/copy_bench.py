"""Copy benchmark: dmi's registry engine against skopeo and the docker daemon path, in one run.

Run by hand from the repository root (after `make venv`):

    .venv/bin/python bench/copy_bench.py                 # 10 images on a shared base + one 1 GiB layer
    .venv/bin/python bench/copy_bench.py --big-mib 0     # the set only

Everything runs on loopback: a token-auth registry standing in for Docker Hub behind the rig's counting
proxy (the source), one fresh target registry per tool, and the rig's dockerd. Each tool copies the
same images (tool "docker" is dmi's engine = docker path, without Airflow); the table shows wall time
and its ratio to dmi, requests and bytes read from the source, and the peak memory of the tool's
processes (for docker: the client plus dockerd and containerd).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402
from tests.rig.services import Dockerd  # noqa: E402

PY = sys.executable
DMI = str(Path(PY).with_name("dmi"))

# Copy many images in one dmi process: what a long-lived worker or `dmi` with several pairs does.
DMI_MANY = """
import json, sys
from dmi_provider.registry.copy import ClientPool, Copier
from dmi_provider.registry.pool import plain_http
from dmi_provider.registry.reference import parse_reference
pairs = json.loads(sys.argv[1]); insecure = json.loads(sys.argv[2])
pool = ClientPool(plain_http(insecure), use_docker_config=False)
copier = Copier(pool, progress=lambda s: None)
for src, dst in pairs:
    copier.copy(parse_reference(src), parse_reference(dst))
pool.close()
"""

# dmi's docker engine without Airflow (dmi_provider.engines.docker): pull, tag, push, remove through the daemon.
DOCKER_PATH = """
import json, sys, docker
from dmi_provider.engines.base import EngineSetup, RunHooks
from dmi_provider.engines.docker import DockerEngine, split
api = docker.APIClient(base_url=sys.argv[1], timeout=600)
engine = DockerEngine(EngineSetup(endpoint=None, hooks=RunHooks(say=lambda s: None)), api=api)
for src, dst in json.loads(sys.argv[2]):
    engine.pull(src, None)
    api.tag(src, *split(dst), force=True)
    engine.push(dst, None)
    engine.remove([dst, src])
"""


def shaped(proxy: Proxy, args: argparse.Namespace) -> Proxy:
    """The proxy adds --latency-ms to each request and shares --mbit per direction (a far-away registry)."""
    proxy.latency = args.latency_ms / 1000
    proxy.bytes_per_second = args.mbit * 1e6 / 8 if args.mbit else None
    return proxy


@dataclass
class Row:
    tool: str
    run: str
    seconds: float
    requests: int
    manifest_gets: int
    blob_gets: int
    source_bytes: int
    peak_mib: float


def tree_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    return total


def measure(argvs: list[list[str]], extra_pids: Callable[[], list[int]] = list,
            env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run commands one after another; return wall seconds and the peak RSS (MiB) of their process trees."""
    peak = 0
    baseline = tree_rss(extra_pids())
    started = time.monotonic()
    for argv in argvs:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        stop = threading.Event()

        def sample(proc: subprocess.Popen = proc, stop: threading.Event = stop) -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss([proc.pid, *extra_pids()]) - baseline)
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = proc.communicate()
        stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return time.monotonic() - started, peak / 1048576


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--base-mib", type=int, default=64, help="shared base layer size")
    parser.add_argument("--layer-mib", type=int, default=8, help="each image's own layer size")
    parser.add_argument("--big-mib", type=int, default=1024, help="the single large layer (0: none)")
    parser.add_argument("--tools", default="dmi,dmi-one-process,skopeo,docker",
                        help="also: dmi-no-referrers (dmi copy --no-referrers: the image alone, as skopeo copies)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request, both sides")
    parser.add_argument("--mbit", type=float, default=0.0, help="bandwidth per direction, both sides (0: loopback)")
    args = parser.parse_args()
    tools = args.tools.split(",")

    work = Path(tempfile.mkdtemp(prefix="dmi-bench-"))
    services: list = []
    hub = Registry("hub", work / "hub", auth="token", users={"bench": "bench-pass"}).start()
    services.append(hub)
    proxy = shaped(Proxy(hub.url, ratelimit=100000).start(), args)
    dockerd = Dockerd.start() if "docker" in tools else None

    print(f"building {args.images} images on a {args.base_mib} MiB base"
          + (f" and one {args.big_mib} MiB layer" if args.big_mib else ""), file=sys.stderr)
    factory = ImageFactory(seed=42)
    base = factory.layer(args.base_mib << 20)
    seeder = RigClient(hub.url, ("bench", "bench-pass"))
    names = []
    for i in range(args.images):
        push(seeder, f"bench/app{i}", "1.0", factory.image(layers=[base, factory.layer(args.layer_mib << 20)]))
        names.append(f"bench/app{i}:1.0")
    del base
    if args.big_mib:
        push(seeder, "bench/big", "1.0", factory.image(layers=[factory.layer(args.big_mib << 20)]))
        names.append("bench/big:1.0")
    seeder.close()

    rows: list[Row] = []
    for tool in tools:
        target: Registry | Proxy = Registry(f"target-{tool}", work / f"target-{tool}").start()
        services.append(target)
        if args.latency_ms or args.mbit:  # the target side of the link too
            target = shaped(Proxy(target.url).start(), args)  # type: ignore[union-attr]
            services.append(target)
        pairs = [(f"{proxy.host}/{n}", f"{target.host}/mirror/{n}") for n in names]
        insecure = [proxy.host, target.host]
        for run in ("first", "again"):
            if tool in ("dmi", "dmi-no-referrers"):
                argvs = [[DMI, "copy", "-q", "--insecure", proxy.host, "--insecure", target.host, s, d]
                         + (["--no-referrers"] if tool == "dmi-no-referrers" else []) for s, d in pairs]
            elif tool == "dmi-one-process":
                argvs = [[PY, "-c", DMI_MANY, json.dumps(pairs), json.dumps(insecure)]]
            elif tool == "skopeo":
                argvs = [["skopeo", "copy", "-q", "--all", "--preserve-digests", "--insecure-policy",
                          "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{s}", f"docker://{d}"]
                         for s, d in pairs]
            elif tool == "docker":
                assert dockerd is not None
                argvs = [[PY, "-c", DOCKER_PATH, dockerd.base_url, json.dumps(pairs)]]
            else:
                raise SystemExit(f"unknown tool {tool}")
            daemon_pids = (lambda: [int((dockerd.root / "docker.pid").read_text())]) if tool == "docker" else list
            proxy.reset()
            print(f"{tool} ({run} run)...", file=sys.stderr)
            # dmi's blob location hints live in this run's own folder (skopeo keeps its cache in ~).
            env = os.environ | {"DMI_CACHE_DIR": str(work / "dmi-cache")}
            seconds, peak = measure(argvs, daemon_pids, env)
            rows.append(Row(tool, run, seconds, proxy.count(), proxy.count("GET", "manifest"),
                            proxy.count("GET", "blob"), proxy.bytes_out, peak))

    first = {r.tool: r for r in rows if r.run == "first"}
    ref = first.get("dmi") or rows[0]
    print()
    print(f"{len(names)} images: {args.images} x ({args.base_mib} MiB shared base + {args.layer_mib} MiB)"
          + (f" + one {args.big_mib} MiB layer" if args.big_mib else ""))
    print()
    print("| tool | run | wall s | x dmi | source requests | manifest GETs | blob GETs | MiB read from source "
          "| peak MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        base_row = ref if r.run == "first" else next(x for x in rows if x.tool == ref.tool and x.run == r.run)
        print(f"| {r.tool} | {r.run} | {r.seconds:.2f} | {r.seconds / max(base_row.seconds, 1e-9):.2f} | "
              f"{r.requests} | {r.manifest_gets} | {r.blob_gets} | {r.source_bytes / 1048576:.1f} | {r.peak_mib:.0f} |")

    proxy.stop()
    for service in services:
        service.stop()
    if dockerd:
        dockerd.stop()


if __name__ == "__main__":
    main()
