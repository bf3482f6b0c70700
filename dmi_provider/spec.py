"""A section's settings: one frozen dataclass tree, whose fields' metadata is the key table.

Each config.ini key is declared once, on the field it sets (`key`), or among the keys a field is worked out
from (`derived`: the section reader computes it), or on a field of a class from another module (`node`).
The reader (config.py), `dmi keys`, README's key table and the operators all come from this tree, so a new
key is one field here (and its README row). The field helpers are config_keys.py's; the `verify*` keys' part
of the tree (`VerifySpec`) sits with their parsers in config_verify.py. Plain Python: no Airflow import here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from dmi_provider.config_keys import (
    ACR_NAME_RE,
    API_ENDPOINT_RE,
    CLOUDS,
    DEFAULT_POOL_SLOTS,
    DEFAULT_TARGET_UPLOADS,
    ENGINES,
    FIELDS,
    GAR_LOCATION_RE,
    GAR_REPOSITORY_RE,
    GCP_KMS_RE,
    GCP_PROJECT_RE,
    KEY,
    KEYS_OF,
    NODE,
    SOURCES,
    TARGETS,
    Key,
    PolicyFile,
    Refresh,
    _artifact_kind,
    _bool,
    _ca_bundle,
    _choice,
    _cleanup_policies,
    _conn_id,
    _count,
    _docker_url,
    _each,
    _labels,
    _lifecycle_policy,
    _matching,
    _one,
    _patterns,
    _percent,
    _platform,
    _pool,
    _proxy,
    _queue,
    _refresh,
    _repository_tags,
    _size,
    _text,
    derived,
    key,
    node,
)
from dmi_provider.config_verify import VerifySpec
from dmi_provider.registry.blobs import STALL_BYTES, STALL_TIMEOUT
from dmi_provider.registry.network import Network
from dmi_provider.registry.reference import DOCKER_HUB, check_host, check_path, check_tag
from dmi_provider.registry.referrers import DEFAULT_MAX as REFERRERS_MAX
from dmi_provider.registry.referrers import HARD_MAX as REFERRERS_HARD_MAX
from dmi_provider.registry.referrers import ReferrerFilter
from dmi_provider.tags import DEFAULT_MAX, HARD_MAX, TagFilter, check_range, check_tag_or_pin, split_pin

ECR, GAR, ACR = ("ecr",), ("gar",), ("acr",)




@dataclass(frozen=True)
class Environment:
    """The legacy environment variables of the original tool (read once per config, not keys)."""

    cloud: str = "AWS"  # AWS, GOOGLE or AZURE (GCP and GKE are read as GOOGLE)
    aws_account: str | None = None
    aws_region: str | None = None
    db_path: str | None = None

    @property
    def default_target(self) -> str:
        return CLOUDS.get(self.cloud, "ecr")

    def ecr_host(self) -> str | None:
        if self.aws_account and self.aws_region:
            return f"{self.aws_account}.dkr.ecr.{self.aws_region}.amazonaws.com"
        return None


@dataclass(frozen=True)
class SourceSpec:
    """Where images come from, and how DMI logs in there."""

    kind: str = key(
        "source", "`registry`", "what kind of registry the source is, for its login: `registry` (any registry; "
        "`source-conn-id` a registry login), or a cloud's, logged in like a target: `ecr` (an AWS connection), `gar` "
        "(a Google Cloud connection), `acr` (an Azure connection). A cloud source needs `source-registry` (its host: "
        "`123456789012.dkr.ecr.eu-west-1.amazonaws.com`, `europe-west3-docker.pkg.dev`, `NAME.azurecr.io`) and "
        "takes its connection from `source-conn-id` (default `aws_default`, `google_cloud_default`, `azure_default`)",
        _choice(*SOURCES), "registry")
    registry: str = key(
        "source-registry", "`docker.io`", "`host[:port]` of the source registry (`quay.io`, `ghcr.io`, "
        "`registry.local:5000`). Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`) all mean "
        "`docker.io`", _one(check_host), DOCKER_HUB)
    repository: str = derived(  # the normalised path, e.g. library/alpine
        Key("image", "required", "the image name on the source registry, e.g. `proxyv2`, or a path such as "
        "`library/alpine`"),
        Key("source-repository", "none", "the source namespace (`istio`); the source is `source-repository/image`. On "
        "Docker Hub a one-part name means `library/NAME` (`alpine` → `docker.io/library/alpine`)"),
        default="")
    conn_id: str | None = key(
        "source-conn-id", "anonymous; a cloud source: its cloud's default connection", "Airflow connection of the "
        "source: a registry login (login, password) for `source = registry`, else an AWS, Google Cloud or Azure "
        "connection as for that cloud's target", _conn_id)
    proxy: str | None = key(
        "source-proxy", "`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`", "`http://host:port`: the proxy for the "
        "source registry's requests, whatever the environment says. No password here: put a proxy that needs "
        "one in the registry connection's `proxy` extra, or in `HTTPS_PROXY`", _one(_proxy))
    ca_bundle: str | None = key(
        "source-ca-bundle", "the system's CAs, `SSL_CERT_FILE`", "a PEM file (absolute, or relative to "
        "`config.ini`'s folder) with the CA that signed the source registry's certificate; trusted besides the "
        "system's CAs. TLS stays verified", _ca_bundle)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class EcrSettings:
    """A `target = ecr` section's repository settings."""

    conn_id: str = key(
        "aws-conn-id", "`aws_default`", "Airflow AWS connection used for ECR (falls back to the usual AWS variables "
        "and profiles)", _conn_id, "aws_default", ECR)
    scan_on_push: bool = key(
        "scan-on-push", "`false`", "ECR: `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`)", _bool, False,
        ECR)
    tag_mutability: str = key(
        "tag-mutability", "`MUTABLE`", "ECR: `MUTABLE` or `IMMUTABLE`", _choice("MUTABLE", "IMMUTABLE", upper=True),
        "MUTABLE", ECR)
    encryption: str = key(
        "encryption", "`AES256`", "ECR: `AES256` or `KMS`", _choice("AES256", "KMS", upper=True), "AES256", ECR)
    kms_key: str | None = key(
        "kms-key", "AWS-managed key", "ECR: KMS key ARN, id or alias; only with `encryption = KMS`", targets=ECR)
    lifecycle_policy: PolicyFile | None = key(
        "lifecycle-policy", "none", "ECR: path to a lifecycle policy JSON file in `config.ini`'s folder (or below "
        "it; relative to it), a regular file of at most 30 KiB holding a JSON object with a `rules` list",
        _lifecycle_policy, targets=ECR)
    repository_tags: tuple[tuple[str, str], ...] = key(
        "repository-tags", "none", "ECR: resource tags for the repository, `key=value` pairs separated by commas",
        _repository_tags, (), ECR)


@dataclass(frozen=True)
class GarSettings:
    """A `target = gar` section's Artifact Registry repository, with the API's own field names."""

    conn_id: str = key(
        "gcp-conn-id", "`google_cloud_default`", "GAR: Airflow Google Cloud connection (`google_cloud_platform`: "
        "`key_path`, `keyfile_dict` or `credential_config_file` in its extra; none: application-default "
        "credentials); see \"Google Artifact Registry\"", _conn_id, "google_cloud_default", GAR)
    location: str = key(
        "gar-location", "`us`", "GAR: the repository's location: a multi-region (`us`, `europe`, `asia`) or a region "
        "(`europe-west3`); the registry is `LOCATION-docker.pkg.dev`", _matching(GAR_LOCATION_RE, "a GAR location "
        "such as us, europe or europe-west3"), "us", GAR)
    project: str | None = key(  # None: the connection's project
        "gar-project", "the connection's project (its extra `project`, else the key's `project_id`)", "GAR: the "
        "Google Cloud project id", _matching(GCP_PROJECT_RE, "a Google Cloud project id (6-30 lowercase letters, "
        "digits, hyphens)"), None, GAR)
    repository: str = key(
        "gar-repository", "`mirror`", "GAR: the Artifact Registry repository (format DOCKER) images go into, "
        "created when missing; images are `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/project/image`",
        _matching(GAR_REPOSITORY_RE, "an Artifact Registry repository id (lowercase letters, digits, hyphens, at "
                                      "most 63)"), "mirror", GAR)
    immutable_tags: bool = key(
        "gar-immutable-tags", "`false`", "GAR: `dockerConfig.immutableTags` of a repository DMI creates", _bool, False,
        GAR)
    kms_key_name: str | None = key(
        "gar-kms-key-name", "Google-managed key", "GAR: `kmsKeyName`, the CMEK key "
        "`projects/P/locations/L/keyRings/R/cryptoKeys/K` of a repository DMI creates",
        _matching(GCP_KMS_RE, "projects/P/locations/L/keyRings/R/cryptoKeys/K"), None, GAR)
    labels: tuple[tuple[str, str], ...] = key(
        "gar-labels", "none", "GAR: `labels`, `key=value` pairs separated by commas (lowercase letters, digits, _ "
        "and -)", _labels, (), GAR)
    description: str | None = key(
        "gar-description", "none", "GAR: `description` of a repository DMI creates", _text, None, GAR)
    cleanup_policies: PolicyFile | None = key(
        "gar-cleanup-policies", "none", "GAR: path to a JSON file in `config.ini`'s folder holding the API's "
        "`cleanupPolicies` object (policy id -> `{\"id\", \"action\": \"DELETE\"|\"KEEP\", \"condition\"|"
        "\"mostRecentVersions\"}`), at most 30 KiB", _cleanup_policies, None, GAR)
    cleanup_policy_dry_run: bool = key(
        "gar-cleanup-policy-dry-run", "`false`", "GAR: `cleanupPolicyDryRun`: `true` only logs what the cleanup "
        "policies would delete", _bool, False, GAR)
    api_endpoint: str = key(
        "gar-api-endpoint", "`artifactregistry.googleapis.com`", "GAR: the Artifact Registry API's host (a Private "
        "Service Connect endpoint; `http://host:port` for a local stand-in)", _matching(API_ENDPOINT_RE, "a host, "
        "host:port or http(s)://host:port"), "artifactregistry.googleapis.com", GAR)

    @property
    def host(self) -> str:
        return f"{self.location}-docker.pkg.dev"


@dataclass(frozen=True)
class AcrSettings:
    """A `target = acr` section's registry and the repository locks set after each push."""

    conn_id: str = key(
        "azure-conn-id", "`azure_default`", "ACR: Airflow Azure connection: type `azure` (service principal: login "
        "client id, password secret, extra `tenantId`; without them managed or workload identity) or "
        "`azure_container_registry` (login and password: admin user or service principal); see \"Azure Container "
        "Registry\"", _conn_id, "azure_default", ACR)
    name: str | None = key(  # None: the connection's host
        "acr-name", "the connection's host (an `azure_container_registry` connection's Registry Server)", "ACR: the "
        "registry's name; the registry is `NAME.azurecr.io` (`target-registry` for another host)",
        _matching(ACR_NAME_RE, "an ACR registry name: 5-50 letters and digits"), None, ACR)
    write_enabled: bool | None = key(  # None: as the registry has it
        "acr-write-enabled", "as the registry has it", "ACR: `false` locks the repository against pushes and tag "
        "changes by others (`writeEnabled`); DMI lifts it for its own push and sets it again after", _bool, None, ACR)
    delete_enabled: bool | None = key(
        "acr-delete-enabled", "as the registry has it", "ACR: `false` protects the repository's images from "
        "deletion (`deleteEnabled`), set after each push", _bool, None, ACR)

    def attributes(self) -> dict[str, bool]:
        wanted = {"writeEnabled": self.write_enabled, "deleteEnabled": self.delete_enabled}
        return {k: v for k, v in wanted.items() if v is not None}

    @property
    def host(self) -> str | None:
        return f"{self.name.lower()}.azurecr.io" if self.name else None


@dataclass(frozen=True)
class TargetSpec:
    """Where images go: the kind of target, its registry and repository, and each cloud's settings."""

    kind: str = key(
        "target", "`ecr`; `gar` with `CLOUD=GOOGLE` (or `GCP`, `GKE`), `acr` with `CLOUD=AZURE`", "`ecr` (AWS ECR), "
        "`gar` (Google Artifact Registry), `acr` (Azure Container Registry) or `registry` (any OCI / Docker v2 "
        "registry)", _choice(*TARGETS), "ecr")
    registry: str | None = key(
        "target-registry", "ECR: the host from the ECR token; GAR: `LOCATION-docker.pkg.dev`; ACR: "
        "`NAME.azurecr.io`", "`host[:port]` to push to. Required for `target = registry`. For a cloud it replaces "
        "the registry host (PrivateLink or Private Service Connect endpoints, sovereign clouds, tests)",
        _one(check_host))
    repository: str = derived(  # project/image, or target-repository
        Key("project", "required unless `target-repository` is set", "the target namespace: the target repository is "
        "`project/image`"),
        Key("target-repository", "`project/image`", "the full target repository path, for renaming",
        _one(lambda v: check_path(v.strip("/")))),
        default="")
    tag: str | None = key(
        "target-tag", "the source tag", "the tag written at the target (re-tagging); only with exactly one source "
        "tag", _one(check_tag))
    conn_id: str | None = key(
        "target-conn-id", "none", "Airflow connection with the credentials of a `target = registry` registry",
        _conn_id)
    proxy: str | None = key(
        "target-proxy", "`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`", "the same for the target registry (ECR's "
        "API calls follow the AWS connection and the environment)", _one(_proxy))
    ca_bundle: str | None = key(
        "target-ca-bundle", "the system's CAs, `SSL_CERT_FILE`", "the same for the target registry",
        _ca_bundle)
    ecr: EcrSettings = node(EcrSettings)
    gar: GarSettings = node(GarSettings)
    acr: AcrSettings = node(AcrSettings)

    def name(self, ecr_host: str | None = None) -> str:
        """`host/path` of the target repository as far as config.ini tells (a host known only at run time
        in <>)."""
        if self.kind == "gar":
            return f"{self.registry or self.gar.host}/{self.gar.project or '<project>'}/{self.gar.repository}/" \
                   f"{self.repository}"
        host = self.registry or (ecr_host if self.kind == "ecr" else self.acr.host if self.kind == "acr" else None)
        return f"{host or f'<{self.kind}>'}/{self.repository}"


@dataclass(frozen=True)
class SelectionSpec:
    """What is mirrored of the source repository: tags, platforms, and what travels with each image."""

    tags: tuple[str, ...] = derived(  # named tags and pins, in order, once each
        Key("tag", "required unless `tags` or a `tags-*` filter is set", "one tag, e.g. `1.7.0`; `1.7.0@sha256:…` "
        "mirrors it only while the source tag holds that digest; `@sha256:…` mirrors an untagged digest (with "
        "`target-tag`)", _each(check_tag_or_pin), ()),
        Key("tags", "—", "several tags, e.g. `1.7.0, 1.8.0` (pins as in `tag`); with `tag` too, both are mirrored. A "
        "section's own `tag`/`tags` replace those of `[DEFAULT]`", _each(check_tag_or_pin), ()),
        default=())
    filter: TagFilter = node(
        TagFilter,
        matching=Key(
        "tags-matching", "none", "regular expressions, separated by spaces or new lines: mirror the source's tags "
        "that match one of them whole (see \"Choosing tags\")", _patterns, ()),
        excluding=Key(
        "tags-excluding", "none", "regular expressions, separated by spaces or new lines: leave out the tags "
        "that match one of them whole", _patterns, ()),
        semver=Key(
        "tags-semver", "none", "a semver range over the source's tags: `>=1.20 <2`, `~1.7`, `^3`, `1.2.x`; tags "
        "that are not versions never match", _one(check_range)),
        prerelease=Key(
        "tags-prerelease", "`false`", "`true`: `tags-semver` also matches pre-releases (`1.8.0-rc.1`)", _bool,
        False),
        newest=Key(
        "tags-newest", "all", "N: only the newest N of the tags the filters kept (versions first, newest "
        "first)", _count(1, HARD_MAX)),
        max=Key(
        "tags-max", f"`{DEFAULT_MAX}`", f"how many tags a section may expand to (at most {HARD_MAX}); more is "
        "an error at run time, not a flood of pulls", _count(1, HARD_MAX), DEFAULT_MAX),
    )
    platforms: tuple[str, ...] = key(
        "platforms", "all", "`os/arch[/variant]` list, e.g. `linux/amd64, linux/arm64`. With a filter the target "
        "gets a new index listing only those platforms (its digest differs from the source's)", _each(_platform), ())
    referrers: ReferrerFilter = node(
        ReferrerFilter,
        enabled=Key(
        "referrers", "`true`", "copy what refers to each mirrored image, for its index and each platform: OCI 1.1 "
        "referrers (signatures, SBOMs, attestations with a `subject`: through the referrers API, else the "
        "`sha256-<hex>` fallback tag) and cosign's `sha256-<hex>.sig` / `.att` / `.sbom` tags; `false` copies the "
        "image alone", _bool, True),
        include=Key(
        "referrers-include", "all", "only these artifacts travel: kinds `signature`, `attestation`, `sbom`, or "
        "artifact types (`application/spdx+json`), separated by commas or spaces", _each(_artifact_kind), ()),
        exclude=Key(
        "referrers-exclude", "none", "these artifacts stay behind (same names as `referrers-include`)",
        _each(_artifact_kind), ()),
        most=Key(
        "referrers-max", f"`{REFERRERS_MAX}`", f"at most this many referrers per image (per platform), newest "
        f"first by their `org.opencontainers.image.created` annotation, the rest left behind with a warning (1 to "
        f"{REFERRERS_HARD_MAX}): each is a pull at the source and several requests at the target",
        _count(1, REFERRERS_HARD_MAX), REFERRERS_MAX),
    )


@dataclass(frozen=True)
class TransferSpec:
    """How bytes travel: plain HTTP hosts, upload chunks, uploads at once per target."""

    insecure_registries: tuple[str, ...] = key(
        "insecure-registries", "none", "hosts allowed over plain HTTP; every other registry is HTTPS with verified "
        "TLS", _each(check_host), ())
    upload_chunk_size: int | None = key(  # None: the target's own default
        "upload-chunk-size", "`0`; ACR: `8MiB`", "how blobs are uploaded to the target: `0` as one streaming PUT "
        "each; a size (`8MiB`, `512KiB`, 64KiB to 1GiB) sends larger blobs in chunks of that size (PATCH), for "
        "registries or proxies that refuse large request bodies (HTTP 413). GAR takes no chunks", _size, None,
        ("ecr", "acr", "registry"))
    target_uploads: int = key(  # blob uploads at once per target registry, fleet-wide
        "target-uploads", f"`{DEFAULT_TARGET_UPLOADS}`", "blob uploads at once to one target registry across all "
        "workers (a lease per upload in the tracking database, when that is a server database such as PostgreSQL); "
        "`0`: no limit but each task's own (4 at once). Give sections of one target the same value: set it in "
        "`[DEFAULT]`", _count(0, 1000), DEFAULT_TARGET_UPLOADS)

    stall_timeout: int = key(
        "stall-timeout", f"`{int(STALL_TIMEOUT)}`", f"seconds a blob transfer may go without progress: less than "
        f"{STALL_BYTES >> 10} KiB from the source in that long (a silent or trickling source) fails the attempt, "
        "which frees its upload slot and is retried from zero within the retry budget (10 to 3600)",
        _count(10, 3600), int(STALL_TIMEOUT))

    def network(self, host: str, proxy: str | None, ca_bundle: str | None) -> Network:
        return Network(proxy, ca_bundle, host in self.insecure_registries)


@dataclass(frozen=True)
class BudgetSpec:
    """What a section may spend at its source: a share of the pull limit, and the pool of its tasks."""

    pull_reserve: float = key(
        "pull-reserve", "`10%`", "the share of a source's pull limit (Docker Hub: `ratelimit-limit`) DMI never "
        "spends, for the other machines behind the same IP: `0%` to `100%` (`%` optional, e.g. `25`, `12.5%`). A "
        "pull task that would spend into it waits (deferred) until the window frees pulls", _percent, 10.0)
    pool: str = derived(  # the named pool, else dmi_<source host>
        Key("source-pool", "`dmi_<source host>`, e.g. `dmi_docker_io`", "the Airflow pool of the tasks that talk to "
        "the source (pull, push): it bounds how many run at once per source. The default pool is created with "
        f"{DEFAULT_POOL_SLOTS} slots when a run first needs it; a pool you name must exist", _one(_pool)),
        default="")


@dataclass(frozen=True)
class EngineSpec:
    """How bytes move: the registry engine, or a Docker daemon."""

    name: str = key(
        "engine", "`registry`", "`registry` copies registry to registry without a Docker daemon; `docker` pulls, "
        "tags and pushes through a Docker daemon (see \"The docker engine\")", _choice(*ENGINES), "registry")
    docker_url: str | None = key(
        "docker-url", "`$DOCKER_HOST`, else `unix:///var/run/docker.sock`", "the daemon for `engine = docker` "
        "(`unix://`, `tcp://`, `https://`, `ssh://`)", _docker_url)
    docker_conn_id: str | None = key(
        "docker-conn-id", "none", "Airflow Docker connection the daemon logs in with (through the docker provider's "
        "`DockerHook`); source and target credentials are otherwise passed per pull and push", _conn_id)
    keep_local_images: bool = key(
        "keep-local-images", "`false`", "`engine = docker`: keep the pulled and tagged images on the daemon after a "
        "successful push (by default they are removed so workers do not fill their disks)", _bool, False)
    queues: tuple[str, ...] = key(
        "docker-queue", "none (Airflow's default queue)", "`engine = docker` on several workers: the Celery queue(s) "
        "of the daemon tasks (pull, tag, push), so one section's steps run on one worker and its daemon. Several "
        "names (spaces or commas) spread the sections over them in config order; start each worker with its own "
        "queue (`airflow celery worker -q default,NAME`)", _each(_queue), ())
    queue: str | None = None  # the one of `queues` this section's daemon tasks use (config order)


@dataclass(frozen=True)
class MirrorSpec:
    """One config section: one source repository and its tags, and where they go."""

    section: str = "mirror"
    dag_id: str = "dmi_mirror"
    refresh: Refresh | None = key(
        "refresh", "required (in `[DEFAULT]` or the section)", "`0` (mirror once, never refresh) or `N` followed by "
        "`m`, `h`, `d` or `w`, N a positive integer: `30m`, `6h`, `1d`, `1w`; at most `520w`", _refresh)
    source: SourceSpec = node(SourceSpec)
    target: TargetSpec = node(TargetSpec)
    selection: SelectionSpec = node(SelectionSpec)
    transfer: TransferSpec = node(TransferSpec)
    budget: BudgetSpec = node(BudgetSpec)
    engine: EngineSpec = node(EngineSpec)
    verify: VerifySpec = node(VerifySpec)
    tracking_conn_id: str = key(
        "tracking-conn-id", "`dmi_tracking`", "Airflow connection of the tracking database; when it does not exist, "
        "SQLite at `DB_PATH`, else `$AIRFLOW_HOME/dmi/tracking.db`", _conn_id, "dmi_tracking")
    env: Environment = field(default_factory=Environment)

    def target_tags(self) -> tuple[str, ...]:
        """The target tags of the named tags (a pin's tag without its digest)."""
        if self.target.tag:
            return (self.target.tag,)
        return tuple(split_pin(t)[0] or "" for t in self.selection.tags)

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(source tag, target tag) for each named tag; a source tag may carry a pin (`1.7.0@sha256:…`).
        Sections with tag filters add the tags found at run time (dmi_provider.tags)."""
        return tuple(zip(self.selection.tags, self.target_tags(), strict=True))

    @property
    def quarantine(self) -> str | None:
        """The quarantine repository, when images that do not verify are tagged there."""
        if self.verify.mode == "none" or self.verify.on_failure != "quarantine":
            return None
        return self.verify.quarantine_repository or f"quarantine/{self.target.repository}"

    def target_name(self) -> str:
        return self.target.name(self.env.ecr_host())

    @property
    def source_network(self) -> Network:
        """The source's proxy and CA from config.ini (a connection's extras may add to them)."""
        return self.transfer.network(self.source.registry, self.source.proxy, self.source.ca_bundle)

    def target_network(self, host: str) -> Network:
        return self.transfer.network(host, self.target.proxy, self.target.ca_bundle)


# -- the key table, read off the tree ---------------------------------------------------------------
def _keys(cls: type) -> Iterator[Key]:
    for f in fields(cls):
        meta = f.metadata
        if KEY in meta:
            yield meta[KEY]
        yield from meta.get(KEYS_OF, ())
        if NODE in meta:
            yield from meta[FIELDS].values() if meta[FIELDS] else _keys(meta[NODE])


KEY_TABLE: tuple[Key, ...] = tuple(_keys(MirrorSpec))
# The keys of the tag filter's fields that select tags (TagFilter.SELECTING): a section with one needs no tag.
_FILTER = next(f for f in fields(SelectionSpec) if f.name == "filter").metadata[FIELDS]
FILTER_KEYS: tuple[str, ...] = tuple(_FILTER[name].name for name in TagFilter.SELECTING)
KEYS: dict[str, Key] = {k.name: k for k in KEY_TABLE}


def build(cls: type, values: dict[str, Any], derived: dict[str, Any], path: str = "") -> Any:
    """A spec (or a part of it) from the parsed keys and what the reader worked out (`derived`, by dotted
    field path, e.g. `source.repository`); fields neither set keep their defaults."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        where, meta = f"{path}{f.name}", f.metadata
        if where in derived:
            kwargs[f.name] = derived[where]
        elif KEY in meta:
            kwargs[f.name] = values[meta[KEY].name]
        elif NODE in meta and meta[FIELDS]:
            kwargs[f.name] = meta[NODE](**{name: values[k.name] for name, k in meta[FIELDS].items()})
        elif NODE in meta:
            kwargs[f.name] = build(meta[NODE], values, derived, f"{where}.")
    return cls(**kwargs)


def plain_fields(cls: type = MirrorSpec, path: str = "") -> Iterator[str]:
    """Dotted paths of the fields no key sets (what a test checks against the reader's own list)."""
    for f in fields(cls):
        meta = f.metadata
        if NODE in meta and not meta[FIELDS]:
            yield from plain_fields(meta[NODE], f"{path}{f.name}.")
        elif not (KEY in meta or KEYS_OF in meta or NODE in meta):
            yield f"{path}{f.name}"


def markdown_table() -> str:
    """README's key table."""
    rows = ["| key | default | what it accepts |", "| --- | --- | --- |"]
    rows += [f"| `{k.name}` | {k.default} | {k.help} |" for k in KEY_TABLE]
    return "\n".join(rows)


def plain_list() -> str:
    """`dmi keys`: every key, its default, and what it accepts, without Markdown."""
    width = max(len(k.name) for k in KEY_TABLE)
    return "\n".join(f"{k.name:<{width}}  {k.help.replace('`', '')} (default: {k.default.replace('`', '')})"
                     for k in KEY_TABLE)
