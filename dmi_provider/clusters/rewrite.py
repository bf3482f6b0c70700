"""The mirror as a rewrite of image references, for admission controllers and CI: a map (upstream reference ->
mirror reference, the forms manifests write), kustomize `images:` entries, and a Kyverno ClusterPolicy."""

from __future__ import annotations

import re
from collections.abc import Iterable

from dmi_provider.clusters.mapping import MappingError, Mirrored, conflicts
from dmi_provider.registry.reference import DOCKER_HUB, parse_reference


def written_forms(m: Mirrored) -> list[str]:
    """How manifests name the upstream repository: `docker.io/library/alpine`, `library/alpine`, `alpine`."""
    forms = [m.upstream_name]
    if m.upstream == DOCKER_HUB:
        forms.append(m.repository)
        if m.repository.startswith("library/"):
            forms.append(m.repository.removeprefix("library/"))
    return forms


def rewrite_map(mirrors: Iterable[Mirrored]) -> dict:
    """`repositories`: any tag or digest of these (keep the `:tag` / `@digest`); `images`: the named tags (a
    `target-tag` rename among them); `kustomize`: `images:` entries for a kustomization.yaml."""
    mirrors = list(mirrors)
    problems = conflicts(mirrors)
    if problems:
        raise MappingError(problems)
    repositories: dict[str, str] = {}
    images: dict[str, str] = {}
    kustomize: list[dict[str, str]] = []
    for m in mirrors:
        for form in written_forms(m):
            if form not in repositories:
                repositories[form] = m.mirror_name
                kustomize.append({"name": form, "newName": m.mirror_name})
            for src, dst in m.tags:
                if src is not None:
                    images[f"{form}:{src}"] = m.mirror_reference(dst)
    return {"repositories": repositories, "images": images, "kustomize": {"images": kustomize}}


def rewrite_reference(text: str, mapping: dict) -> str | None:
    """The mirror reference of one image reference by the map (an exact named tag first), or None."""
    if text in mapping["images"]:
        return str(mapping["images"][text])
    ref = parse_reference(text, default_tag=None)
    named = f"{ref.name}:{ref.tag}" if ref.tag else None
    if named and named in mapping["images"]:
        return str(mapping["images"][named]) + (f"@{ref.digest}" if ref.digest else "")
    mirror = mapping["repositories"].get(ref.name)
    if mirror is None:
        return None
    return mirror + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")


def image_pattern(m: Mirrored) -> str:
    """A Go (RE2) regular expression for every written form of the upstream repository, any tag or digest
    as group 1."""
    if m.upstream == DOCKER_HUB:
        path = m.repository
        name = re.escape(path.removeprefix("library/"))
        repo = f"(?:library/)?{name}" if path.startswith("library/") else re.escape(path)
        return rf"^(?:(?:docker\.io|index\.docker\.io)/)?{repo}([:@].*)?$"
    return rf"^{re.escape(m.upstream_name)}([:@].*)?$"


def _foreach(pattern: str, replacement: str, field: str) -> dict:
    element = "{{ element.image }}"
    return {
        "list": f"request.object.spec.{field} || `[]`",
        "preconditions": {"all": [{"key": f"{{{{ regex_match('{pattern}', '{element}') }}}}", "operator": "Equals",
                                   "value": True}]},
        "patchStrategicMerge": {"spec": {field: [{
            "name": "{{ element.name }}",
            "image": f"{{{{ regex_replace_all('{pattern}', '{element}', '{replacement}') }}}}"}]}},
    }


def kyverno_policy(mirrors: Iterable[Mirrored], name: str = "dmi-mirror") -> dict:
    """A ClusterPolicy that rewrites the containers and initContainers of new Pods to the mirror (tag renames
    stay out: use the map). Each rule is one mirrored repository."""
    mirrors = list(mirrors)
    problems = conflicts(mirrors)
    if problems:
        raise MappingError(problems)
    rules, seen = [], set()
    for m in mirrors:
        if m.upstream_name in seen:
            continue
        seen.add(m.upstream_name)
        pattern, replacement = image_pattern(m), f"{m.mirror_name}${{1}}"
        rules.append({
            "name": re.sub(r"[^a-z0-9-]+", "-", f"mirror-{m.upstream_name}".lower()).strip("-")[:63],
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "mutate": {"foreach": [_foreach(pattern, replacement, f) for f in ("containers", "initContainers")]},
        })
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": name, "annotations": {"policies.kyverno.io/description":
                                                       "Pull mirrored images from the DMI mirror."}},
            "spec": {"background": False, "rules": rules}}
