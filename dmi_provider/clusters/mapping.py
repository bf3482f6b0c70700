"""Where each upstream repository of a config.ini lands at the mirror: the one mapping the node configurations,
the rewrite map and the image check are all written from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dmi_provider.config import MirrorConfig
from dmi_provider.errors import DmiError
from dmi_provider.registry.reference import DOCKER_HUB, DOCKER_HUB_API
from dmi_provider.spec import MirrorSpec
from dmi_provider.tags import TagFilter, split_pin


class MappingError(DmiError):
    """Mappings a runtime cannot express, or a mirror host config.ini does not tell; one line per problem."""

    def __init__(self, problems: Iterable[str], fixable: bool = False):
        self.problems = tuple(problems)
        self.fixable = fixable  # every problem is a section --partial would leave out
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Mirrored:
    """One section: an upstream repository, where it lands, and which of its tags."""

    section: str
    upstream: str  # the registry as references name it: docker.io, quay.io, host:port
    repository: str  # the upstream path, normalised: library/alpine
    host: str  # the mirror's host[:port]
    path: str  # the mirror's repository path (GAR: PROJECT/REPOSITORY/…)
    tags: tuple[tuple[str | None, str], ...]  # (upstream tag, mirror tag) of the named tags; None: a digest pin
    filter: TagFilter  # tags chosen at run time
    plain_http: bool  # the mirror is in insecure-registries
    credentials: str | None  # who must log in to pull from the mirror (a cloud's name, a connection), or None
    refresh_seconds: float | None  # None: mirrored once
    ca_bundle: str | None = None  # target-ca-bundle: the CA the mirror's certificate comes from
    target_repository: str = ""  # config.ini's (project/image or target-repository), for hints
    upstream_plain_http: bool = False  # the source is in insecure-registries

    @property
    def upstream_name(self) -> str:
        return f"{self.upstream}/{self.repository}"

    @property
    def mirror_name(self) -> str:
        return f"{self.host}/{self.path}"

    @property
    def prefix(self) -> str | None:
        """What the mirror puts before the upstream path (`""` when it is the same path), or None when the
        mirror's path does not end with the upstream's (a rename no prefix expresses)."""
        if self.path == self.repository:
            return ""
        if self.path.endswith(f"/{self.repository}"):
            return self.path[: -len(self.repository)]
        return None

    @property
    def renamed_tags(self) -> tuple[tuple[str, str], ...]:
        return tuple((src, dst) for src, dst in self.tags if src is not None and src != dst)

    def mirror_reference(self, tag: str | None = None, digest: str | None = None) -> str:
        return self.mirror_name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def upstream_url(registry: str, plain_http: bool = False) -> str:
    """The URL a runtime pulls an upstream registry from (Docker Hub's API host differs from its name)."""
    host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    return f"{'http' if plain_http else 'https'}://{host}"


def _mirror_host(spec: MirrorSpec) -> tuple[str | None, str, str | None]:
    """(host, path, what is missing) of a section's target, as far as config.ini and the environment tell."""
    target = spec.target
    if target.kind == "gar":
        if not target.gar.project:
            return None, "", "gar-project (the project comes from the Google connection at run time)"
        return target.registry or target.gar.host, f"{target.gar.project}/{target.gar.repository}/" \
                                                   f"{target.repository}", None
    if target.registry:
        return target.registry, target.repository, None
    if target.kind == "ecr":
        host = spec.env.ecr_host()
        missing = "target-registry, or AWS_ACCOUNT and AWS_DEFAULT_REGION in the environment (the ECR host comes " \
                  "from the AWS token)"
        return host, target.repository, None if host else missing
    if target.kind == "acr" and target.acr.host:
        return target.acr.host, target.repository, None
    return None, "", "acr-name or target-registry (the registry comes from the Azure connection at run time)"


def _credentials(spec: MirrorSpec, host: str) -> str | None:
    kind = spec.target.kind
    if kind in ("ecr", "gar", "acr"):
        return {"ecr": "AWS ECR", "gar": "Google Artifact Registry", "acr": "Azure Container Registry"}[kind]
    return f"connection {spec.target.conn_id}" if spec.target.conn_id else None


def mirrored(spec: MirrorSpec) -> Mirrored:
    host, path, missing = _mirror_host(spec)
    if host is None:
        raise MappingError([f"[{spec.section}]: the mirror's host is not known before a run: set {missing}"])
    tags = tuple((split_pin(src)[0], dst) for src, dst in spec.pairs())
    interval = spec.refresh.interval if spec.refresh else None
    # Registry names are case-insensitive; runtimes look them up in lowercase (a folder per registry).
    return Mirrored(spec.section, spec.source.registry.lower(), spec.source.repository, host.lower(), path, tags,
                    spec.selection.filter, host in spec.transfer.insecure_registries, _credentials(spec, host),
                    interval.total_seconds() if interval else None, spec.target.ca_bundle,
                    spec.target.repository, spec.source.registry in spec.transfer.insecure_registries)


def mirrors_of(config: MirrorConfig, sections: Iterable[str] = ()) -> list[Mirrored]:
    """Every section's mapping, in config order; the sections whose host is unknown all named at once."""
    wanted = set(sections)
    out: list[Mirrored] = []
    problems: list[str] = []
    for spec in config.sections:
        if wanted and spec.section not in wanted:
            continue
        try:
            out.append(mirrored(spec))
        except MappingError as exc:
            problems.extend(exc.problems)
    unknown = sorted(wanted - {s.section for s in config.sections})
    problems += [f"{config.path}: no section [{name}]" for name in unknown]
    if problems:
        raise MappingError(problems)
    return out


def conflicts(mirrors: Iterable[Mirrored]) -> list[str]:
    """One line per upstream repository that two sections send to different mirror repositories, and per mirror
    repository that two upstream repositories share (a pull of one would get the other's images)."""
    by_upstream: dict[str, Mirrored] = {}
    by_mirror: dict[str, Mirrored] = {}
    lines = []
    for m in mirrors:
        seen = by_upstream.setdefault(m.upstream_name, m)
        if seen is not m and seen.mirror_name != m.mirror_name:
            lines.append(f"[{seen.section}] and [{m.section}] both mirror {m.upstream_name}, to {seen.mirror_name} "
                         f"and to {m.mirror_name}: a runtime maps one upstream repository to one place; send both "
                         "to one")
        other = by_mirror.setdefault(m.mirror_name, m)
        if other is not m and other.upstream_name != m.upstream_name:
            lines.append(f"[{other.section}] and [{m.section}] both write {m.mirror_name}, from "
                         f"{other.upstream_name} and from {m.upstream_name}: give each its own target-repository")
    return lines
