"""containerd's registry hosts (`hosts.toml` per upstream registry, containerd 1.5 and later): the mirror first,
the upstream as fallback. containerd appends the upstream repository path to a host's URL, so a mirror path
must be the upstream's under a prefix (`override_path`); other renames and tag renames are refused."""

from __future__ import annotations

import json
from collections.abc import Iterable

from dmi_provider.clusters.mapping import MappingError, Mirrored, conflicts, upstream_url
from dmi_provider.registry.reference import looks_like_host

HEADER = "# Written by `dmi cluster-config --format containerd` from {config}; regenerate it, do not edit it."


def inexpressible(m: Mirrored) -> str | None:
    """Why containerd cannot pull this section's images from the mirror under their upstream names, or None."""
    if m.prefix is None:
        return (f"[{m.section}]: {m.upstream_name} is mirrored to {m.mirror_name}, a path that does not end with "
                f"{m.repository}; containerd asks a mirror for the upstream path under a prefix: set "
                f"target-repository = {_suggestion(m)}, or use --format cri-o or rewrite")
    if m.renamed_tags:
        src, dst = m.renamed_tags[0]
        return (f"[{m.section}]: target-tag writes {m.upstream_name}:{src} as {dst}; containerd cannot rename "
                f"tags: use --format rewrite")
    return None


def crossings(mirrors: list[Mirrored]) -> list[str]:
    """A host in R's hosts.toml answers every path of R under its prefix: a repository another registry's
    section wrote there would be served for R's image of that name. One line per such section."""
    lines = []
    for r in mirrors:
        for m in mirrors:
            if m.upstream == r.upstream or m.host != r.host or r.prefix is None or m.prefix is None:
                continue
            rest = m.path[len(r.prefix):] if m.path.startswith(r.prefix) else None
            if rest is None or looks_like_host(rest.split("/", 1)[0]):
                continue  # outside r's prefix, or under a registry-named folder no r image can have
            lines.append(f"[{m.section}] writes {m.upstream_name} to {m.mirror_name}, where {r.upstream}'s hosts.toml "
                         f"([{r.section}]) sends {r.upstream}/{rest} pulls: that image would come from "
                         f"{m.upstream}; give each registry its own folder (target-repository = "
                         f"{m.upstream}/{m.repository})")
            break
    return list(dict.fromkeys(lines))


def _suggestion(m: Mirrored) -> str:
    """A target-repository that keeps the section's namespace and puts the upstream path under it."""
    namespace = m.target_repository.rpartition("/")[0]
    return f"{namespace}/{m.repository}" if namespace else m.repository


def _host_url(m: Mirrored) -> str:
    scheme = "http" if m.plain_http else "https"
    return f"{scheme}://{m.host}" + (f"/v2/{m.prefix.rstrip('/')}" if m.prefix else "")


def _entry(url: str, mirrors: list[Mirrored], top: bool = False) -> list[str]:
    m = mirrors[0]
    names = ", ".join(f"[{x.section}]" for x in mirrors)
    lines = [f"# {names}"] if not top else []
    if not top:
        lines.append(f"[host.{json.dumps(url)}]")
    indent = "" if top else "  "
    lines.append(f'{indent}capabilities = ["pull", "resolve"]')
    if m.prefix:
        lines.append(f"{indent}override_path = true")
    if m.ca_bundle:
        lines.append(f"{indent}ca = {json.dumps(m.ca_bundle)}  # the mirror's CA, at this path on the node")
    return lines


def hosts_toml(upstream: str, mirrors: list[Mirrored], fallback: str | None, config: str) -> str:
    """One upstream registry's hosts.toml. `fallback`: the URL tried when no mirror host has the image
    (None: the mirror alone, so an image DMI does not mirror fails to pull instead)."""
    by_url: dict[str, list[Mirrored]] = {}
    for m in mirrors:
        by_url.setdefault(_host_url(m), []).append(m)
    # Every miss costs a request per host tried first: the host serving most sections goes first.
    ordered = sorted(by_url.items(), key=lambda item: -len(item[1]))
    lines = [HEADER.format(config=config), f"# {upstream}: {len(mirrors)} section(s) mirrored"]
    if fallback:
        lines.append(f"server = {json.dumps(fallback)}  # the upstream, for images the mirror does not hold")
    else:  # the first mirror host is the server itself: listed once, asked once per miss
        (url, first), ordered = ordered[0], ordered[1:]
        lines.append(f"server = {json.dumps(url)}  # no fallback: images the mirror lacks fail to pull")
        lines += _entry(url, first, top=True)
    for url, group in ordered:
        lines += ["", *_entry(url, group)]
    return "\n".join(lines) + "\n"


def containerd_files(mirrors: Iterable[Mirrored], config: str, fallback: bool = True,
                     upstreams: dict[str, str] | None = None, partial: bool = False,
                     ) -> tuple[dict[str, str], list[str]]:
    """{relative path: text} of the hosts directory, and the lines of sections left out (`partial`); raises
    MappingError naming every section containerd cannot express (and every conflict) otherwise."""
    mirrors = list(mirrors)
    problems = conflicts(mirrors) + crossings(mirrors)
    left_out = [why for m in mirrors if (why := inexpressible(m))]
    if problems or (left_out and not partial):
        raise MappingError(problems + left_out, fixable=not problems)
    kept = [m for m in mirrors if inexpressible(m) is None]
    by_upstream: dict[str, list[Mirrored]] = {}
    for m in kept:
        by_upstream.setdefault(m.upstream, []).append(m)
    files = {}
    for upstream, group in by_upstream.items():
        plain = any(m.upstream_plain_http for m in group)
        url = ((upstreams or {}).get(upstream) or upstream_url(upstream, plain)) if fallback else None
        files[f"{upstream}/hosts.toml"] = hosts_toml(upstream, group, url, config)
    return files, left_out
