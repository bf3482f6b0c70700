"""The `dmi` command line. Plain Python: commands that need Airflow import it themselves."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from dmi_provider import __version__
from dmi_provider.config import KEYS, ConfigError, MirrorConfig, load_config

EXIT_BAD_INPUT = 2


def _describe(config: MirrorConfig) -> str:
    env = config.env
    ecr_host = env.ecr_host()
    dags = config.dags()
    n = len(config.sections)
    lines = [
        f"{config.path}: {n} section{'s' if n != 1 else ''} in {len(dags)} DAG{'s' if len(dags) != 1 else ''} "
        f"(cloud {env.cloud}, ECR {ecr_host or 'host from the AWS connection at run time'})",
    ]
    for dag_id, specs in dags.items():
        lines.append("")
        lines.append(f"DAG {dag_id}  schedule: {specs[0].refresh.schedule}")
        for spec in specs:
            target = spec.target_name(ecr_host)
            for src_tag, dst_tag in spec.pairs():
                lines.append(f"  [{spec.section}] {spec.source}:{src_tag} -> {target}:{dst_tag}")
            extras = [f"task group {spec.group_id}", f"target {spec.target}", f"engine {spec.engine}",
                      f"platforms {', '.join(spec.platforms) or 'all'}"]
            lines.append(f"      {'; '.join(extras)}")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        payload = {
            "path": config.path,
            "environment": dataclasses.asdict(config.env),
            "dags": {
                dag_id: {
                    "schedule": specs[0].refresh.schedule,
                    "sections": [dataclasses.asdict(s) | {"source": s.source} for s in specs],
                }
                for dag_id, specs in config.dags().items()
            },
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(_describe(config))
    return 0


def cmd_keys(_args: argparse.Namespace) -> int:
    width = max(map(len, KEYS))
    for key, text in KEYS.items():
        print(f"{key:<{width}}  {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmi", description="DMI (Docker Mirror Images): mirror container images into private registries."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a config.ini and show the DAGs and schedules it makes")
    p.add_argument("config", metavar="CONFIG", help="path to config.ini")
    p.add_argument("--json", action="store_true", help="print the parsed sections as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("keys", help="list every config.ini key and what it accepts")
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
