"""`dmi cluster-config`: node configuration (containerd, CRI-O) or a rewrite (map, Kyverno) that makes clusters pull
the images config.ini mirrors from the mirror (README, "Make your clusters use the mirror")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dmi_provider.cli.common import EXIT_BAD_INPUT, load

FORMATS = ("containerd", "cri-o", "rewrite", "kyverno")


def _files(args: argparse.Namespace, mirrors: list, config: str) -> tuple[dict[str, str], list[str]]:
    import yaml

    from dmi_provider.clusters.containerd import containerd_files
    from dmi_provider.clusters.crio import crio_files
    from dmi_provider.clusters.rewrite import kyverno_policy, rewrite_map

    fallback, upstreams, partial = not args.no_fallback, dict(args.upstream), args.partial
    if args.format == "containerd":
        return containerd_files(mirrors, config, fallback, upstreams, partial)
    if args.format == "cri-o":
        return crio_files(mirrors, config, fallback, upstreams, partial)
    head = f"# Written by `dmi cluster-config --format {args.format}` from {config}; regenerate it, do not edit it.\n"
    if args.format == "rewrite":
        mapping = rewrite_map(mirrors)
        if args.json:
            return {"rewrite.json": json.dumps(mapping, indent=2) + "\n"}, []
        return {"rewrite.yaml": head + yaml.safe_dump(mapping, sort_keys=False, width=1000)}, []
    return {"kyverno-clusterpolicy.yaml": head + yaml.safe_dump(kyverno_policy(mirrors), sort_keys=False,
                                                                   width=1000)}, []


def _warnings(args: argparse.Namespace, mirrors: list) -> list[str]:
    """A mirror that needs a login is configured, but the runtime does not get the kubelet's credentials for it."""
    if args.format not in ("containerd", "cri-o"):
        return []
    lines, seen = [], set()
    for m in mirrors:
        if m.credentials and m.host not in seen:
            seen.add(m.host)
            lines.append(f"warning: {m.host} ([{m.section}]) needs {m.credentials} credentials, and {args.format} "
                         "does not pass the kubelet's image credentials to a mirror: give the nodes a login for it, "
                         "or use --format rewrite (the kubelet's credential provider then logs in)")
    return lines


def cmd_cluster_config(args: argparse.Namespace) -> int:
    from dmi_provider.clusters.mapping import MappingError, mirrors_of

    config = load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    try:
        mirrors = mirrors_of(config, args.section)
        files, left_out = _files(args, mirrors, Path(args.config).name)
    except MappingError as exc:
        for line in exc.problems:
            print(f"dmi cluster-config: {line}", file=sys.stderr)
        print(f"dmi cluster-config: nothing written ({len(exc.problems)} problem(s); --partial writes the rest)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in [*_warnings(args, mirrors), *(f"left out: {why}" for why in left_out)]:
        print(f"dmi cluster-config: {line}", file=sys.stderr)
    if not args.out:
        for name, text in files.items():
            print(f"# --- {name}\n{text}", end="")
        return 0
    out = Path(args.out)
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    for path in _left_behind(out, args.format, files):
        path.unlink()
        print(f"removed {path} (an earlier run wrote it; config.ini no longer mirrors that registry)")
    return 0


def _left_behind(out: Path, fmt: str, files: dict[str, str]) -> list[Path]:
    """hosts.toml files an earlier `--format containerd` run wrote for registries no longer mirrored: left in
    place, containerd would still send those pulls to the mirror. Only files with our header go."""
    if fmt != "containerd":
        return []
    mark = "# Written by `dmi cluster-config --format containerd`"
    return [path for path in sorted(out.glob("*/hosts.toml"))
            if path.relative_to(out).as_posix() not in files and path.read_text(errors="replace").startswith(mark)]


def _upstream(text: str) -> tuple[str, str]:
    from dmi_provider.registry.reference import InvalidReference, check_host

    registry, sep, url = text.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected REGISTRY=URL, e.g. docker.io=https://hub-cache.local")
    try:
        return check_host(registry), url.rstrip("/")
    except InvalidReference as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cluster_config_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster-config", help="node configuration (containerd, CRI-O) or an image rewrite "
                       "(map, Kyverno policy) that makes clusters pull what config.ini mirrors from the mirror")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("--format", required=True, choices=FORMATS, help="containerd: DIR/<registry>/hosts.toml; cri-o: "
                   "DIR/registries.conf.d/50-dmi-mirror.conf; rewrite: upstream -> mirror references (YAML, --json "
                   "for JSON) with kustomize images; kyverno: a ClusterPolicy rewriting Pods")
    p.add_argument("--out", metavar="DIR", help="write the files under DIR (default: print them)")
    p.add_argument("--no-fallback", action="store_true", help="containerd, cri-o: pull only from the mirror, never "
                   "from the upstream (default: the upstream serves what the mirror lacks)")
    p.add_argument("--upstream", action="append", default=[], type=_upstream, metavar="REGISTRY=URL",
                   help="containerd, cri-o: where the fallback pulls REGISTRY from (a pull-through cache, a "
                   "proxy); default the registry itself (docker.io: https://registry-1.docker.io)")
    p.add_argument("--partial", action="store_true", help="write what the format can express and name the "
                   "sections left out (default: write nothing when one cannot be expressed)")
    p.add_argument("--section", action="append", default=[], help="only this section (repeatable)")
    p.add_argument("--json", action="store_true", help="rewrite: the map as JSON")
    p.set_defaults(func=cmd_cluster_config)
