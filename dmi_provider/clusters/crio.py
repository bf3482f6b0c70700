"""CRI-O (containers/image): a `registries.conf.d` drop-in with one `[[registry]]` per upstream repository and the
mirror as its `[[registry.mirror]]`; renames of the repository path are fine, tag renames are refused."""

from __future__ import annotations

import json
from collections.abc import Iterable

from dmi_provider.clusters.mapping import MappingError, Mirrored, conflicts

FILE = "registries.conf.d/50-dmi-mirror.conf"
HEADER = "# Written by `dmi cluster-config --format cri-o` from {config}; regenerate it, do not edit it."


def inexpressible(m: Mirrored) -> str | None:
    if m.renamed_tags:
        src, dst = m.renamed_tags[0]
        return (f"[{m.section}]: target-tag writes {m.upstream_name}:{src} as {dst}; CRI-O cannot rename tags: "
                f"use --format rewrite")
    return None


def _registry(m: Mirrored, fallback: bool, upstreams: dict[str, str]) -> list[str]:
    lines = [f"# [{m.section}]", "[[registry]]", f"prefix = {json.dumps(m.upstream_name)}"]
    if not fallback:  # the mirror is the only location: nothing is pulled from upstream
        lines.append(f"location = {json.dumps(m.mirror_name)}")
        return lines + (["insecure = true"] if m.plain_http else [])
    scheme, _, where = upstreams.get(m.upstream, "").rpartition("://")
    lines.append(f"location = {json.dumps(f'{where}/{m.repository}' if where else m.upstream_name)}")
    lines += ["insecure = true"] if scheme == "http" or (not where and m.upstream_plain_http) else []
    lines += ["", "[[registry.mirror]]", f"location = {json.dumps(m.mirror_name)}"]
    return lines + (["insecure = true"] if m.plain_http else [])


def crio_files(mirrors: Iterable[Mirrored], config: str, fallback: bool = True,
               upstreams: dict[str, str] | None = None, partial: bool = False) -> tuple[dict[str, str], list[str]]:
    mirrors = list(mirrors)
    problems = conflicts(mirrors)
    left_out = [why for m in mirrors if (why := inexpressible(m))]
    if problems or (left_out and not partial):
        raise MappingError(problems + left_out, fixable=not problems)
    seen: set[str] = set()
    lines = [HEADER.format(config=config)]
    for m in mirrors:
        if inexpressible(m) is None and m.upstream_name not in seen:  # one entry per prefix
            seen.add(m.upstream_name)
            lines += ["", *_registry(m, fallback, upstreams or {})]
    return {FILE: "\n".join(lines) + "\n"}, left_out
