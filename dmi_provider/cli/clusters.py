"""`dmi cluster-config`: node configuration (containerd, CRI-O) or a rewrite (map, Kyverno) that makes clusters pull
the images config.ini mirrors from the mirror (README, "Make your clusters use the mirror")."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dmi_provider.cli.common import EXIT_BAD_INPUT, load
from dmi_provider.clusters.containerd import HEADER as CONTAINERD_HEADER

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
    policy, left_out = kyverno_policy(mirrors)
    return {"kyverno-clusterpolicy.yaml": head + yaml.safe_dump(policy, sort_keys=False, width=1000)}, left_out


def _warnings(args: argparse.Namespace, mirrors: list) -> list[str]:
    """What the runtimes' files cannot carry: the kubelet's credentials for a mirror, CRI-O's CA files."""
    if args.format not in ("containerd", "cri-o"):
        return []
    lines, seen = [], set()
    for m in mirrors:
        if m.host in seen:
            continue
        seen.add(m.host)
        if m.credentials:
            cloud = not m.credentials.startswith("connection ")
            way = ("or use --format rewrite or kyverno (the kubelet's credential provider then logs in)" if cloud
                   else "or use --format rewrite with an imagePullSecret for it")
            lines.append(f"warning: {m.host} ([{m.section}]) needs a login ({m.credentials}), and {args.format} "
                         f"does not pass the kubelet's image credentials to a mirror: give the nodes a login for it, "
                         f"{way}")
        if m.ca_bundle and args.format == "cri-o":
            lines.append(f"warning: {m.host} ([{m.section}]) has a private CA (target-ca-bundle {m.ca_bundle}): "
                         f"put it on each node as /etc/containers/certs.d/{m.host}/ca.crt")
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
        hint = "; --partial writes the rest" if exc.fixable and not args.partial else ""
        print(f"dmi cluster-config: nothing written ({len(exc.problems)} problem(s){hint})", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in [*_warnings(args, mirrors), *(f"left out: {why}" for why in left_out)]:
        print(f"dmi cluster-config: {line}", file=sys.stderr)
    if not args.out:
        for name, text in files.items():
            print(f"# --- {name}\n{text}", end="")
        return 0
    return _write(Path(args.out), files, args, Path(args.config).name)


def _write(out: Path, files: dict[str, str], args: argparse.Namespace, config: str) -> int:
    """The files under OUT, each replaced whole (runtimes read them on every pull); a file DMI did not write is
    kept unless --force."""
    foreign = [out / name for name in files if (out / name).exists() and not _ours((out / name).read_text(
        errors="replace"))]
    if foreign and not args.force:
        for path in foreign:
            print(f"dmi cluster-config: {path} exists and was not written by dmi cluster-config: move it, or "
                  "--force to replace it", file=sys.stderr)
        return EXIT_BAD_INPUT
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.dmi-part")
        part.write_text(text)
        os.replace(part, path)
        print(f"wrote {path}")
    if args.format == "containerd" and not args.section:  # with --section, the rest of config.ini is not here
        header = CONTAINERD_HEADER.format(config=config)
        for path in sorted(out.glob("*/hosts.toml")):
            if path.relative_to(out).as_posix() not in files and path.read_text(errors="replace").startswith(header):
                path.unlink()
                print(f"removed {path} (written from {config} before; it no longer mirrors that registry)")
    return 0


def _ours(text: str) -> bool:
    return text.startswith("# Written by `dmi cluster-config")


def _upstream(text: str) -> tuple[str, str]:
    from dmi_provider.registry.reference import InvalidReference, check_host

    registry, sep, url = text.partition("=")
    scheme, _, host = url.partition("://")
    if not sep or scheme not in ("http", "https") or not host.strip("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected REGISTRY=URL, e.g. docker.io=https://hub-cache.local")
    try:
        return check_host(registry).lower(), url.rstrip("/")
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
    p.add_argument("--no-fallback", action="store_true", help="the mirrored images only from the mirror, never from "
                   "the upstream (default: the upstream serves what the mirror lacks). containerd: every image of a "
                   "mirrored registry; cri-o: the mirrored repositories (other images pull as before)")
    p.add_argument("--upstream", action="append", default=[], type=_upstream, metavar="REGISTRY=URL",
                   help="where the fallback pulls REGISTRY from (a pull-through cache, a proxy); default the "
                   "registry itself (docker.io: https://registry-1.docker.io). cri-o: for the mirrored repositories")
    p.add_argument("--partial", action="store_true", help="write what the format can express and name the "
                   "sections left out (default: write nothing when one cannot be expressed)")
    p.add_argument("--section", action="append", default=[], help="only this section (repeatable)")
    p.add_argument("--json", action="store_true", help="rewrite: the map as JSON")
    p.add_argument("--force", action="store_true", help="--out: replace files there that dmi cluster-config did "
                   "not write (default: refuse)")
    p.set_defaults(func=cmd_cluster_config)
