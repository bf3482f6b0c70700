"""What one section mirrors, as plain data. No Airflow import here.

The operators build a Job from their arguments, the CLI from a config section; engines and targets
read it. Small and picklable: it travels inside operators to the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dmi_provider.config import AcrSettings, EcrSettings, Environment, GarSettings, MirrorSpec, target_name
from dmi_provider.registry.network import Network
from dmi_provider.registry.reference import Reference, parse_reference
from dmi_provider.registry.referrers import ReferrerFilter
from dmi_provider.tags import TagFilter


@dataclass(frozen=True)
class Job:
    section: str
    source: str  # registry/repository, e.g. docker.io/istio/proxyv2
    pairs: tuple[tuple[str, str], ...]  # (source tag, target tag)
    target_repository: str
    target: str = "ecr"
    target_registry: str | None = None
    target_conn_id: str | None = None
    aws_conn_id: str | None = "aws_default"
    ecr: EcrSettings = field(default_factory=EcrSettings)
    source_conn_id: str | None = None
    platforms: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    engine: str = "registry"
    docker_url: str | None = None
    docker_conn_id: str | None = None
    keep_local_images: bool = False
    tracking_conn_id: str | None = None
    env: Environment = field(default_factory=Environment)
    tag_filter: TagFilter = field(default_factory=TagFilter)
    source_proxy: str | None = None
    source_ca_bundle: str | None = None
    target_proxy: str | None = None
    target_ca_bundle: str | None = None
    pull_reserve: float = 10.0  # percent of a source's pull limit never spent
    referrers: ReferrerFilter = field(default_factory=ReferrerFilter)  # what travels with an image
    source_type: str = "registry"  # or a cloud's registry (ecr, gar, acr), logged in through source_conn_id
    gar: GarSettings = field(default_factory=GarSettings)
    acr: AcrSettings = field(default_factory=AcrSettings)
    upload_chunk_size: int | None = None  # None: the target's own default

    @property
    def source_registry(self) -> str:
        return parse_reference(self.source).registry

    @property
    def source_repository(self) -> str:
        return parse_reference(self.source).repository

    @property
    def source_network(self) -> Network:
        """The source's proxy and CA from config.ini (a connection's extras may add to them)."""
        return Network(self.source_proxy, self.source_ca_bundle, self.source_registry in self.insecure_registries)

    def target_network(self, host: str) -> Network:
        return Network(self.target_proxy, self.target_ca_bundle, host in self.insecure_registries)

    def references(self, target_host: str, namespace: str = "") -> list[tuple[Reference, Reference]]:
        """(source, target) references of every tag pair, the target on `target_host` under `namespace` (GAR:
        PROJECT/REPOSITORY); a source tag may carry a pin (`1.7.0@sha256:…`) or be a digest alone (`@sha256:…`)."""
        where = f"{target_host}/{namespace}/" if namespace else f"{target_host}/"
        return [(parse_reference(f"{self.source}{src}" if src.startswith("@") else f"{self.source}:{src}"),
                 parse_reference(f"{where}{self.target_repository}:{dst}")) for src, dst in self.pairs]

    def target_name(self, tag: str) -> str:
        """A target reference for messages before the target's host is known (ECR: from the login)."""
        where = target_name(self.target, self.target_registry, self.target_repository, self.env.ecr_host(), self.gar,
                            self.acr)
        return f"{where}:{tag}"

    @classmethod
    def from_spec(cls, spec: MirrorSpec, env: Environment) -> Job:
        return cls(section=spec.section, source=spec.source, pairs=spec.pairs(),
                   target_repository=spec.target_repository, target=spec.target, target_registry=spec.target_registry,
                   target_conn_id=spec.target_conn_id, aws_conn_id=spec.aws_conn_id, ecr=spec.ecr,
                   source_conn_id=spec.source_conn_id, platforms=spec.platforms,
                   insecure_registries=spec.insecure_registries, engine=spec.engine, docker_url=spec.docker_url,
                   docker_conn_id=spec.docker_conn_id, keep_local_images=spec.keep_local_images,
                   tracking_conn_id=spec.tracking_conn_id, env=env, tag_filter=spec.tag_filter,
                   source_proxy=spec.source_proxy, source_ca_bundle=spec.source_ca_bundle,
                   target_proxy=spec.target_proxy, target_ca_bundle=spec.target_ca_bundle,
                   pull_reserve=spec.pull_reserve, referrers=spec.referrers, source_type=spec.source_type,
                   gar=spec.gar, acr=spec.acr, upload_chunk_size=spec.upload_chunk_size)
