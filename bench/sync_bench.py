"""Sync benchmark: `dmi sync CONFIG` against `skopeo sync --src yaml` on the same images, in one run.

Run by hand from the repository root (after `make venv`):

    .venv/bin/python bench/sync_bench.py                              # loopback
    .venv/bin/python bench/sync_bench.py --latency-ms 40 --mbit 200   # a cloud region over the internet

A token-auth registry stands in for Docker Hub behind the rig's counting proxy; each tool syncs into a fresh
target registry behind a proxy of its own. With --latency-ms / --mbit both proxies add that latency to every
request and share that bandwidth per direction, so round trips and parallelism show. Each tool runs cold
(empty target), then warm (nothing changed). The table: wall time and its ratio to skopeo, requests and
manifest GETs at the source (what Docker Hub counts as pulls), requests at the target, MiB read from the
source, peak memory of the tool's process tree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from copy_bench import DMI, measure, shaped  # noqa: E402

from tests.rig.client import RigClient  # noqa: E402
from tests.rig.images import ImageFactory, push  # noqa: E402
from tests.rig.proxy import Proxy  # noqa: E402
from tests.rig.registry import Registry  # noqa: E402


@dataclass
class Row:
    tool: str
    run: str
    seconds: float
    source_requests: int
    manifest_gets: int
    target_requests: int
    source_mib: float
    peak_mib: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--base-mib", type=int, default=16, help="the shared base layer")
    parser.add_argument("--layer-mib", type=int, default=16, help="each image's own layer")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request, both sides")
    parser.add_argument("--mbit", type=float, default=0.0, help="bandwidth per direction, both sides (0: loopback)")
    parser.add_argument("--parallel", type=int, default=4, help="dmi sync --parallel")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dmi-sync-bench-"))
    hub = Registry("hub", work / "hub", auth="token", users={"bench": "bench-pass"}).start()
    source = shaped(Proxy(hub.url, ratelimit=100000).start(), args)
    services: list = [hub, source]
    print(f"building {args.images} images ({args.base_mib} MiB shared base + {args.layer_mib} MiB own, every "
          "second one for 2 platforms)", file=sys.stderr)
    factory = ImageFactory(seed=7)
    base = factory.layer(args.base_mib << 20)
    seeder = RigClient(hub.url, ("bench", "bench-pass"))
    names = []
    for i in range(args.images):
        image = (factory.multiarch(base=base, size=args.layer_mib << 19) if i % 2 else
                 factory.image(layers=[base, factory.layer(args.layer_mib << 20)]))
        push(seeder, f"bench/app{i}", "1.0", image)
        names.append(f"bench/app{i}")
    seeder.close()
    del base

    rows: list[Row] = []
    # The headline is what a user gets by default (history and referrers on); the other dmi row is labelled.
    for n, tool in enumerate(("skopeo", "dmi", "dmi, referrers = false, --no-history")):
        registry = Registry(f"target-{n}", work / f"target-{n}").start()
        target = shaped(Proxy(registry.url).start(), args)
        services += [registry, target]
        if tool.startswith("dmi"):
            config = work / f"config{n}.ini"
            sections = "".join(f"[app{i}]\nimage = {name}\n" for i, name in enumerate(names))
            lean = tool != "dmi"
            config.write_text(f"[DEFAULT]\nrefresh = 1d\nsource-registry = {source.host}\ntag = 1.0\n"
                              f"project = mirror\ntarget = registry\ntarget-registry = {target.host}\n"
                              f"insecure-registries = {source.host}, {target.host}\n"
                              f"{'referrers = false' if lean else ''}\n\n" + sections)
            argv = [DMI, "sync", "-q", *(["--no-history"] if lean else []), "--parallel", str(args.parallel),
                    str(config)]
        else:
            spec = work / "sync.yaml"
            spec.write_text(f"{source.host}:\n  tls-verify: false\n  images:\n"
                            + "".join(f"    {name}: ['1.0']\n" for name in names))
            argv = ["skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                    "--dest-tls-verify=false", "--retry-times", "0", str(spec), f"{target.host}/mirror"]
        for run in ("cold", "warm"):
            source.reset()
            target.reset()
            print(f"{tool} ({run})...", file=sys.stderr)
            env = os.environ | {"DMI_CACHE_DIR": str(work / f"dmi-cache{n}"), "AIRFLOW_HOME": str(work / "airflow"),
                                "DB_PATH": str(work / f"history{n}.db")}
            seconds, peak = measure([argv], env=env)
            rows.append(Row(tool, run, seconds, source.count(), source.count("GET", "manifest"), target.count(),
                            source.bytes_out / 1048576, peak))
    for service in services:
        service.stop()

    shaping = (f"{args.latency_ms:g} ms per request, {args.mbit:g} Mbit/s per direction" if args.latency_ms or
               args.mbit else "loopback")
    print(f"\n{args.images} images ({args.base_mib} MiB shared base + {args.layer_mib} MiB own, half 2-platform); "
          f"{shaping}\n")
    print("| tool | run | wall s | x skopeo | source requests | source manifest GETs | target requests "
          "| MiB from source | peak MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        peer = next(x for x in rows if x.tool == "skopeo" and x.run == r.run)
        print(f"| {r.tool} | {r.run} | {r.seconds:.2f} | {r.seconds / max(peer.seconds, 1e-9):.2f} | "
              f"{r.source_requests} | {r.manifest_gets} | {r.target_requests} | {r.source_mib:.1f} | "
              f"{r.peak_mib:.0f} |")
    print("\ngoals: dmi sync cold <= 0.7x skopeo, warm <= 0.2x with 0 source manifest GETs")


if __name__ == "__main__":
    main()
