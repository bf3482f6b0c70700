"""The mirror as a rewrite of image references, for admission controllers and CI: a map (upstream reference ->
mirror reference, the forms manifests write), kustomize `images:` entries, and a Kyverno ClusterPolicy."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from dmi_provider.clusters.mapping import MappingError, Mirrored, conflicts
from dmi_provider.registry.reference import DOCKER_HUB, parse_reference
from dmi_provider.tags import describe_filter


def written_forms(m: Mirrored) -> list[str]:
    """How manifests name the upstream repository: `docker.io/library/alpine`, `library/alpine`, `alpine`."""
    forms = [m.upstream_name]
    if m.upstream == DOCKER_HUB:
        forms.append(m.repository)
        if m.repository.startswith("library/"):
            forms.append(m.repository.removeprefix("library/"))
    return forms


def rewrite_map(mirrors: Iterable[Mirrored]) -> dict:
    """`images`: exactly the tags config.ini names (a `target-tag` rename among them); `repositories`: the mirror
    repository of each upstream one, for digests and, for the repositories in `filtered`, tags filters choose
    (keep the `:tag` / `@digest`: the mirror holds only what its sections chose); `kustomize`: `images:`
    entries for a kustomization.yaml (they rename every tag of a name)."""
    mirrors = list(mirrors)
    problems = conflicts(mirrors)
    if problems:
        raise MappingError(problems)
    repositories: dict[str, str] = {}
    images: dict[str, str] = {}
    kustomize: list[dict[str, str]] = []
    filtered: list[str] = []  # repositories whose tags filters choose at run time
    for m in mirrors:
        filtered += [f for f in written_forms(m) if m.filter.active and f not in filtered]
        for form in written_forms(m):
            if form not in repositories:
                repositories[form] = m.mirror_name
                if not m.renamed_tags:  # kustomize renames every tag of a name: a target-tag rename stays out
                    kustomize.append({"name": form, "newName": m.mirror_name})
            for src, dst in m.tags:
                if src is not None:
                    images[f"{form}:{src}"] = m.mirror_reference(dst)
    return {"repositories": repositories, "images": images, "filtered": filtered, "kustomize": {"images": kustomize}}


def rewrite_reference(text: str, mapping: dict) -> str | None:
    """The mirror reference of one image reference by the map (an exact named tag first), or None."""
    if text in mapping["images"]:
        return str(mapping["images"][text])
    ref = parse_reference(text, default_tag=None)
    named = f"{ref.name}:{ref.tag}" if ref.tag else None
    if named and named in mapping["images"]:
        return str(mapping["images"][named]) + (f"@{ref.digest}" if ref.digest else "")
    mirror = mapping["repositories"].get(ref.name)
    if mirror is None or (ref.tag and not ref.digest and ref.name not in mapping["filtered"]):
        return None  # a tag no section names is not at the mirror; a filter's may be, a digest may be
    return mirror + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")


def _forms_pattern(m: Mirrored) -> str:
    """A Go (RE2) expression for every written form of the upstream repository."""
    if m.upstream == DOCKER_HUB:
        path = m.repository
        repo = f"(?:library/)?{re.escape(path.removeprefix('library/'))}" if path.startswith("library/") \
            else re.escape(path)
        return rf"(?:(?:docker\.io|index\.docker\.io)/)?{repo}"
    return re.escape(m.upstream_name)


def _tag_rules(m: Mirrored) -> tuple[list[tuple[str, str, str]], str | None]:
    """(name suffix, pattern, replacement) per rule of one section: only tags the mirror holds are rewritten
    (a rewritten image has no fallback). The second value says what was left out, and why."""
    forms, rules = _forms_pattern(m), []
    kept = [src for src, dst in m.tags if src is not None and src == dst]
    if m.filter.active:
        f = m.filter
        if f.excluding or f.semver or f.newest:
            return [], (f"[{m.section}]: its tags are chosen at run time ({describe_filter(f)}), which a policy "
                        "cannot tell at admission: not in the policy (use the map with dmi check-images in CI)")
        kept += [f"(?:{p})" for p in f.matching]
    alternatives = "|".join(re.escape(t) if not t.startswith("(?:") else t for t in kept)
    if alternatives:
        rules.append(("", rf"^{forms}:({alternatives})(@.+)?$", f"{m.mirror_name}:${{1}}${{2}}"))
    for src, dst in m.renamed_tags:
        rules.append((f"-{src}", rf"^{forms}:{re.escape(src)}(@.+)?$", f"{m.mirror_name}:{dst}${{1}}"))
    return rules, None


def _rule_name(text: str) -> str:
    """A unique Kubernetes name (63 characters at most): a readable part and a hash of the whole."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^a-z0-9-]+', '-', text.lower())[:50].strip('-')}-{digest}"


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


def kyverno_policy(mirrors: Iterable[Mirrored], name: str = "dmi-mirror") -> tuple[dict, list[str]]:
    """A ClusterPolicy that rewrites the containers and initContainers of new Pods to the mirror, for the tags
    the mirror holds (named, renamed, or by a tags-matching filter), and the sections it leaves out."""
    mirrors = list(mirrors)
    problems = conflicts(mirrors)
    if problems:
        raise MappingError(problems)
    rules, left_out = [], []
    for m in mirrors:
        found, why = _tag_rules(m)
        left_out += [why] if why else []
        for suffix, pattern, replacement in found:
            rules.append({
                "name": _rule_name(f"mirror-{m.section}{suffix}"),
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "mutate": {"foreach": [_foreach(pattern, replacement, f) for f in ("containers", "initContainers")]},
            })
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
              "metadata": {"name": name, "annotations": {"policies.kyverno.io/description":
                                                         "Pull mirrored images from the DMI mirror."}},
              "spec": {"background": False, "rules": rules}}
    return policy, left_out
