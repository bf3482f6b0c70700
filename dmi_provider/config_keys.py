"""Every config.ini key in one table: name, default, what it accepts, its parser, the targets it
applies to. The section reader walks it; `dmi keys` and README's key table are printed from it.
Plain Python: no Airflow import here."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dmi_provider.registry.network import check_ca_bundle, check_proxy
from dmi_provider.registry.reference import DOCKER_HUB, check_host, check_path, check_tag
from dmi_provider.tags import DEFAULT_MAX, HARD_MAX, check_pattern, check_range, check_tag_or_pin

REFRESH_HELP = "0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w"
TARGETS = ("ecr", "gar", "acr", "registry")  # the lookup of dmi_provider.targets.TARGETS (a test keeps them equal)
# What `dmi plan` and the UI call each kind of target.
CLOUD_NAMES = {"ecr": "AWS ECR", "gar": "Google Artifact Registry", "acr": "Azure Container Registry",
               "registry": "registry"}
SOURCES = ("registry", "ecr", "gar", "acr")  # kinds of source: a plain registry, or a cloud's with its login
# CLOUD (the original tool's variable) -> the target of sections that set none.
CLOUDS = {"AWS": "ecr", "GOOGLE": "gar", "GCP": "gar", "GKE": "gar", "AZURE": "acr"}
# What a cloud needs installed beyond the base package: (module to look for, extra).
EXTRAS = {"gar": (("google.auth", "google"), ("google.cloud.artifactregistry_v1", "google")),
          "acr": (("azure.identity", "azure"),)}
ENGINES = ("registry", "docker")  # likewise dmi_provider.engines.ENGINES
_PLATFORM_RE = re.compile(r"^[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?$", re.ASCII)
_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$", re.ASCII)
_POOL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$", re.ASCII)
DEFAULT_POOL_SLOTS = 4  # concurrent tasks per source host in its default pool
DEFAULT_TARGET_UPLOADS = 16  # blob uploads at once per target registry, fleet-wide
_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$", re.ASCII)
_DOCKER_URL_RE = re.compile(r"^(unix|tcp|https?|ssh|npipe)://\S+$", re.ASCII)
_REFRESH_RE = re.compile(r"^([1-9][0-9]*)\s*([mhdw])$", re.ASCII)
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_REFRESH = timedelta(weeks=520)
MAX_POLICY_BYTES = 30 * 1024  # ECR's own limit on a lifecycle policy's text
_GAR_LOCATION_RE = re.compile(r"^[a-z]+(?:-[a-z]+[0-9]+)?$", re.ASCII)  # us, europe, europe-west3
_GCP_PROJECT_RE = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", re.ASCII)
_GAR_REPOSITORY_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.ASCII)
_GCP_KMS_RE = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$", re.ASCII)
_GCP_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$", re.ASCII)
_GCP_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$", re.ASCII)
_ACR_NAME_RE = re.compile(r"^[a-zA-Z0-9]{5,50}$", re.ASCII)
_API_ENDPOINT_RE = re.compile(r"^(?:https?://)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$", re.ASCII)
_SIZE_RE = re.compile(r"^([0-9]+)\s*(b|kib|mib|gib|k|m|g)?$", re.ASCII | re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}
MIN_CHUNK, MAX_CHUNK = 64 * 1024, 1024**3
ACR_CHUNK = 8 * 1024**2  # below ACR's ~20 MB limit on one streaming PUT
BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def split_list(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,]+", value.strip()) if v]


@dataclass(frozen=True)
class Refresh:
    """`0` (once) or a fixed interval; `text` is canonical (60m -> 1h, 7d -> 1w)."""

    text: str
    interval: timedelta | None

    @property
    def once(self) -> bool:
        return self.interval is None

    @property
    def schedule(self) -> str:
        return "@once" if self.interval is None else f"every {self.text} ({self.interval})"


def parse_refresh(value: str) -> Refresh:
    text = value.strip().lower()
    if text == "0":
        return Refresh("0", None)
    m = _REFRESH_RE.fullmatch(text)
    if not m:
        raise ValueError(REFRESH_HELP)
    count, unit = int(m.group(1)), m.group(2)
    if count > MAX_REFRESH // _UNITS[unit]:
        raise ValueError(f"at most {MAX_REFRESH.days // 7}w (about 10 years); use 0 to mirror once")
    interval = count * _UNITS[unit]
    # Canonical text: the largest unit that divides the interval exactly.
    for unit in ("w", "d", "h", "m"):
        n, rest = divmod(interval, _UNITS[unit])
        if not rest:
            return Refresh(f"{n}{unit}", interval)
    raise AssertionError("unreachable: minutes divide every interval")


# -- parsers: text -> value, or ValueError with what is allowed ------------------------------------------
Parser = Callable[[str, Path], Any]


def _text(value: str, _base: Path) -> str:
    return value


def _each(check: Callable[[str], str]) -> Parser:
    """A list whose every item passes `check`; all bad items are named at once."""
    def parse(value: str, _base: Path) -> tuple[str, ...]:
        items, bad = [], []
        for item in dict.fromkeys(split_list(value)):
            try:
                items.append(check(item))
            except ValueError as exc:
                bad.append(str(exc))
        if bad:
            raise ValueError("; ".join(bad))
        return tuple(items)
    return parse


def _patterns(value: str, _base: Path) -> tuple[str, ...]:
    """Regular expressions separated by white space (a comma may belong to a pattern: `\\d{1,3}`)."""
    return tuple(check_pattern(p) for p in dict.fromkeys(value.split()))


def _count(low: int, high: int) -> Parser:
    def parse(value: str, _base: Path) -> int:
        if not value.isdigit() or not low <= int(value) <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return int(value)
    return parse


def _one(check: Callable[[str], str]) -> Parser:
    return lambda value, _base: check(value)


def _choice(*allowed: str, upper: bool = False) -> Parser:
    def parse(value: str, _base: Path) -> str:
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ValueError(f"expected one of: {', '.join(allowed)}")
        return value
    return parse


def _bool(value: str, _base: Path) -> bool:
    if value.lower() not in BOOLS:
        raise ValueError("expected true or false")
    return BOOLS[value.lower()]


def _conn_id(value: str, _base: Path) -> str:
    if not _CONN_ID_RE.fullmatch(value):
        raise ValueError("expected an Airflow connection id (letters, digits, _ . -)")
    return value


def _platform(value: str) -> str:
    if not _PLATFORM_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")
    return value


def _docker_url(value: str, _base: Path) -> str:
    if not _DOCKER_URL_RE.fullmatch(value):
        raise ValueError("expected unix:///path/docker.sock, tcp://host:port, https://host:port or ssh://host")
    return value


def _refresh(value: str, _base: Path) -> Refresh:
    return parse_refresh(value)


def _json_file(value: str, base: Path) -> tuple[str, str, Any]:
    """(path, text, parsed JSON) of a file inside config.ini's folder: a regular file, size-capped (read at
    DAG parse time, so nothing may hang or escape there)."""
    folder = base.resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"{path} is outside the config's folder {folder}: keep policy files beside config.ini")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > MAX_POLICY_BYTES:
        raise ValueError(f"{path} has {info.st_size} bytes; a policy file has at most {MAX_POLICY_BYTES}")
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_POLICY_BYTES + 1).decode("utf-8")
        return str(path), text, json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None


def _lifecycle_policy(value: str, base: Path) -> tuple[str, str]:
    """(path, JSON text) of an ECR lifecycle policy."""
    path, text, policy = _json_file(value, base)
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list):
        raise ValueError(f"{path}: expected a JSON object with a \"rules\" list")
    return path, text


def _cleanup_policies(value: str, base: Path) -> tuple[str, str]:
    """(path, JSON text) of GAR cleanup policies: the API's `cleanupPolicies` map, policy id -> policy."""
    path, text, policies = _json_file(value, base)
    if not isinstance(policies, dict) or not policies or not all(
            isinstance(p, dict) and p.get("action") in ("DELETE", "KEEP") for p in policies.values()):
        raise ValueError(f"{path}: expected the API's cleanupPolicies object: policy id -> {{\"id\": …, \"action\": "
                         "\"DELETE\" or \"KEEP\", \"condition\" or \"mostRecentVersions\": …}")
    return path, text


def _pairs(value: str, key_ok: Callable[[str], bool], value_ok: Callable[[str], bool], rule: str
           ) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in [i.strip() for i in value.split(",") if i.strip()]:
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key_ok(key) or not value_ok(val):
            raise ValueError(f"{item!r}: expected key=value ({rule})")
        pairs.append((key, val))
    return tuple(pairs)


def _repository_tags(value: str, _base: Path) -> tuple[tuple[str, str], ...]:
    return _pairs(value, lambda k: 0 < len(k) <= 128, lambda v: len(v) <= 256, "key 1-128, value up to 256 characters")


def _labels(value: str, _base: Path) -> tuple[tuple[str, str], ...]:
    return _pairs(value, _GCP_LABEL_RE.fullmatch, _GCP_LABEL_VALUE_RE.fullmatch,  # type: ignore[arg-type]
                  "Google labels: lowercase letters, digits, _ and -, keys start with a letter, at most 63 each")


def _matching(pattern: re.Pattern[str], what: str) -> Parser:
    def parse(value: str, _base: Path) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"expected {what}")
        return value
    return parse


def _size(value: str, _base: Path) -> int:
    """`0` (one PUT per blob) or a chunk size: `8MiB`, `512KiB`, bytes."""
    found = _SIZE_RE.fullmatch(value.strip())
    size = int(found.group(1)) * _SIZE_UNITS[(found.group(2) or "b").lower()] if found else -1
    if size != 0 and not MIN_CHUNK <= size <= MAX_CHUNK:
        raise ValueError("0 (one PUT per blob) or a chunk size from 64KiB to 1GiB, e.g. 8MiB")
    return size


def _artifact_kind(value: str) -> str:
    if value in ("signature", "attestation", "sbom") or _MEDIA_TYPE_RE.fullmatch(value):
        return value
    raise ValueError(f"{value!r}: signature, attestation, sbom, or an artifact type such as application/spdx+json")


def _percent(value: str, _base: Path) -> float:
    text = value.strip().removesuffix("%").strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError("a percentage from 0% to 100%, e.g. 10%") from None
    if not 0 <= number <= 100 or number != number:
        raise ValueError("a percentage from 0% to 100%, e.g. 10%")
    return number


def _pool(value: str) -> str:
    if not _POOL_RE.fullmatch(value):
        raise ValueError("an Airflow pool name: letters, digits, _ . - (up to 256)")
    return value


def _queue(value: str) -> str:
    if not _POOL_RE.fullmatch(value):
        raise ValueError(f"{value!r}: a Celery queue name: letters, digits, _ . - (up to 256)")
    return value


def _proxy(value: str) -> str:
    if urlsplit(value).password or urlsplit(value).username:
        raise ValueError("no credentials in config.ini: put the proxy URL with its user and password in the "
                         "registry connection's `proxy` extra, or in HTTPS_PROXY")
    return check_proxy(value)


def _ca_bundle(value: str, base: Path) -> str:
    """An absolute path to a readable PEM file (read at parse time, so size-capped)."""
    return check_ca_bundle(str((base / Path(value).expanduser()).resolve()))


# -- the table --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    name: str
    default: str  # as documented
    help: str  # what it accepts
    parse: Parser = _text
    value: Any = None  # the value when the key is not set
    targets: tuple[str, ...] = ()  # the targets it applies to; empty: all


ECR, GAR, ACR = ("ecr",), ("gar",), ("acr",)
KEY_TABLE: tuple[Key, ...] = (
    Key("refresh", "required (in `[DEFAULT]` or the section)", "`0` (mirror once, never refresh) or `N` followed by "
        "`m`, `h`, `d` or `w`, N a positive integer: `30m`, `6h`, `1d`, `1w`; at most `520w`", _refresh),
    Key("image", "required", "the image name on the source registry, e.g. `proxyv2`, or a path such as "
        "`library/alpine`"),
    Key("tag", "required unless `tags` or a `tags-*` filter is set", "one tag, e.g. `1.7.0`; `1.7.0@sha256:…` "
        "mirrors it only while the source tag holds that digest; `@sha256:…` mirrors an untagged digest (with "
        "`target-tag`)", _each(check_tag_or_pin), ()),
    Key("tags", "—", "several tags, e.g. `1.7.0, 1.8.0` (pins as in `tag`); with `tag` too, both are mirrored. A "
        "section's own `tag`/`tags` replace those of `[DEFAULT]`", _each(check_tag_or_pin), ()),
    Key("tags-matching", "none", "regular expressions, separated by spaces or new lines: mirror the source's tags "
        "that match one of them whole (see \"Choosing tags\")", _patterns, ()),
    Key("tags-excluding", "none", "regular expressions, separated by spaces or new lines: leave out the tags "
        "that match one of them whole", _patterns, ()),
    Key("tags-semver", "none", "a semver range over the source's tags: `>=1.20 <2`, `~1.7`, `^3`, `1.2.x`; tags "
        "that are not versions never match", _one(check_range)),
    Key("tags-prerelease", "`false`", "`true`: `tags-semver` also matches pre-releases (`1.8.0-rc.1`)", _bool,
        False),
    Key("tags-newest", "all", "N: only the newest N of the tags the filters kept (versions first, newest "
        "first)", _count(1, HARD_MAX)),
    Key("tags-max", f"`{DEFAULT_MAX}`", f"how many tags a section may expand to (at most {HARD_MAX}); more is "
        "an error at run time, not a flood of pulls", _count(1, HARD_MAX), DEFAULT_MAX),
    Key("source-repository", "none", "the source namespace (`istio`); the source is `source-repository/image`. On "
        "Docker Hub a one-part name means `library/NAME` (`alpine` → `docker.io/library/alpine`)"),
    Key("project", "required unless `target-repository` is set", "the target namespace: the target repository is "
        "`project/image`"),
    Key("source-registry", "`docker.io`", "`host[:port]` of the source registry (`quay.io`, `ghcr.io`, "
        "`registry.local:5000`). Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`) all mean "
        "`docker.io`", _one(check_host), DOCKER_HUB),
    Key("platforms", "all", "`os/arch[/variant]` list, e.g. `linux/amd64, linux/arm64`. With a filter the target "
        "gets a new index listing only those platforms (its digest differs from the source's)", _each(_platform), ()),
    Key("source", "`registry`", "what kind of registry the source is, for its login: `registry` (any registry; "
        "`source-conn-id` a registry login), or a cloud's, logged in like a target: `ecr` (an AWS connection), `gar` "
        "(a Google Cloud connection), `acr` (an Azure connection). A cloud source needs `source-registry` (its host: "
        "`123456789012.dkr.ecr.eu-west-1.amazonaws.com`, `europe-west3-docker.pkg.dev`, `NAME.azurecr.io`) and "
        "takes its connection from `source-conn-id` (default `aws_default`, `google_cloud_default`, `azure_default`)",
        _choice(*SOURCES), "registry"),
    Key("target", "`ecr`; `gar` with `CLOUD=GOOGLE` (or `GCP`, `GKE`), `acr` with `CLOUD=AZURE`", "`ecr` (AWS ECR), "
        "`gar` (Google Artifact Registry), `acr` (Azure Container Registry) or `registry` (any OCI / Docker v2 "
        "registry)", _choice(*TARGETS), "ecr"),
    Key("target-registry", "ECR: the host from the ECR token; GAR: `LOCATION-docker.pkg.dev`; ACR: "
        "`NAME.azurecr.io`", "`host[:port]` to push to. Required for `target = registry`. For a cloud it replaces "
        "the registry host (PrivateLink or Private Service Connect endpoints, sovereign clouds, tests)",
        _one(check_host)),
    Key("target-repository", "`project/image`", "the full target repository path, for renaming",
        _one(lambda v: check_path(v.strip("/")))),
    Key("target-tag", "the source tag", "the tag written at the target (re-tagging); only with exactly one source "
        "tag", _one(check_tag)),
    Key("insecure-registries", "none", "hosts allowed over plain HTTP; every other registry is HTTPS with verified "
        "TLS", _each(check_host), ()),
    Key("source-proxy", "`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`", "`http://host:port`: the proxy for the "
        "source registry's requests, whatever the environment says. No password here: put a proxy that needs "
        "one in the registry connection's `proxy` extra, or in `HTTPS_PROXY`", _one(_proxy)),
    Key("target-proxy", "`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`", "the same for the target registry (ECR's "
        "API calls follow the AWS connection and the environment)", _one(_proxy)),
    Key("source-ca-bundle", "the system's CAs, `SSL_CERT_FILE`", "a PEM file (absolute, or relative to "
        "`config.ini`'s folder) with the CA that signed the source registry's certificate; trusted besides the "
        "system's CAs. TLS stays verified", _ca_bundle),
    Key("target-ca-bundle", "the system's CAs, `SSL_CERT_FILE`", "the same for the target registry",
        _ca_bundle),
    Key("upload-chunk-size", "`0`; ACR: `8MiB`", "how blobs are uploaded to the target: `0` as one streaming PUT "
        "each; a size (`8MiB`, `512KiB`, 64KiB to 1GiB) sends larger blobs in chunks of that size (PATCH), for "
        "registries or proxies that refuse large request bodies (HTTP 413). GAR takes no chunks", _size, None,
        ("ecr", "acr", "registry")),
    Key("referrers", "`true`", "copy what refers to each mirrored image, for its index and each platform: OCI 1.1 "
        "referrers (signatures, SBOMs, attestations with a `subject`: through the referrers API, else the "
        "`sha256-<hex>` fallback tag) and cosign's `sha256-<hex>.sig` / `.att` / `.sbom` tags; `false` copies the "
        "image alone", _bool, True),
    Key("referrers-include", "all", "only these artifacts travel: kinds `signature`, `attestation`, `sbom`, or "
        "artifact types (`application/spdx+json`), separated by commas or spaces", _each(_artifact_kind), ()),
    Key("referrers-exclude", "none", "these artifacts stay behind (same names as `referrers-include`)",
        _each(_artifact_kind), ()),
    Key("pull-reserve", "`10%`", "the share of a source's pull limit (Docker Hub: `ratelimit-limit`) DMI never "
        "spends, for the other machines behind the same IP: `0%` to `100%` (`%` optional, e.g. `25`, `12.5%`). A "
        "pull task that would spend into it waits (deferred) until the window frees pulls", _percent, 10.0),
    Key("source-pool", "`dmi_<source host>`, e.g. `dmi_docker_io`", "the Airflow pool of the tasks that talk to "
        "the source (pull, push): it bounds how many run at once per source. The default pool is created with "
        f"{DEFAULT_POOL_SLOTS} slots when a run first needs it; a pool you name must exist", _one(_pool)),
    Key("target-uploads", f"`{DEFAULT_TARGET_UPLOADS}`", "blob uploads at once to one target registry across all "
        "workers (a lease per upload in the tracking database, when that is a server database such as PostgreSQL); "
        "`0`: no limit but each task's own (4 at once). Give sections of one target the same value: set it in "
        "`[DEFAULT]`", _count(0, 1000), DEFAULT_TARGET_UPLOADS),
    Key("docker-queue", "none (Airflow's default queue)", "`engine = docker` on several workers: the Celery queue(s) "
        "of the daemon tasks (pull, tag, push), so one section's steps run on one worker and its daemon. Several "
        "names (spaces or commas) spread the sections over them in config order; start each worker with its own "
        "queue (`airflow celery worker -q default,NAME`)", _each(_queue), ()),
    Key("source-conn-id", "anonymous; a cloud source: its cloud's default connection", "Airflow connection of the "
        "source: a registry login (login, password) for `source = registry`, else an AWS, Google Cloud or Azure "
        "connection as for that cloud's target", _conn_id),
    Key("target-conn-id", "none", "Airflow connection with the credentials of a `target = registry` registry",
        _conn_id),
    Key("aws-conn-id", "`aws_default`", "Airflow AWS connection used for ECR (falls back to the usual AWS variables "
        "and profiles)", _conn_id, "aws_default", ECR),
    Key("gcp-conn-id", "`google_cloud_default`", "GAR: Airflow Google Cloud connection (`google_cloud_platform`: "
        "`key_path`, `keyfile_dict` or `credential_config_file` in its extra; none: application-default "
        "credentials); see \"Google Artifact Registry\"", _conn_id, "google_cloud_default", GAR),
    Key("azure-conn-id", "`azure_default`", "ACR: Airflow Azure connection: type `azure` (service principal: login "
        "client id, password secret, extra `tenantId`; without them managed or workload identity) or "
        "`azure_container_registry` (login and password: admin user or service principal); see \"Azure Container "
        "Registry\"", _conn_id, "azure_default", ACR),
    Key("tracking-conn-id", "`dmi_tracking`", "Airflow connection of the tracking database; when it does not exist, "
        "SQLite at `DB_PATH`, else `$AIRFLOW_HOME/dmi/tracking.db`", _conn_id, "dmi_tracking"),
    Key("engine", "`registry`", "`registry` copies registry to registry without a Docker daemon; `docker` pulls, "
        "tags and pushes through a Docker daemon (see \"The docker engine\")", _choice(*ENGINES), "registry"),
    Key("docker-url", "`$DOCKER_HOST`, else `unix:///var/run/docker.sock`", "the daemon for `engine = docker` "
        "(`unix://`, `tcp://`, `https://`, `ssh://`)", _docker_url),
    Key("docker-conn-id", "none", "Airflow Docker connection the daemon logs in with (through the docker provider's "
        "`DockerHook`); source and target credentials are otherwise passed per pull and push", _conn_id),
    Key("keep-local-images", "`false`", "`engine = docker`: keep the pulled and tagged images on the daemon after a "
        "successful push (by default they are removed so workers do not fill their disks)", _bool, False),
    Key("scan-on-push", "`false`", "ECR: `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`)", _bool, False,
        ECR),
    Key("tag-mutability", "`MUTABLE`", "ECR: `MUTABLE` or `IMMUTABLE`", _choice("MUTABLE", "IMMUTABLE", upper=True),
        "MUTABLE", ECR),
    Key("encryption", "`AES256`", "ECR: `AES256` or `KMS`", _choice("AES256", "KMS", upper=True), "AES256", ECR),
    Key("kms-key", "AWS-managed key", "ECR: KMS key ARN, id or alias; only with `encryption = KMS`", targets=ECR),
    Key("lifecycle-policy", "none", "ECR: path to a lifecycle policy JSON file in `config.ini`'s folder (or below "
        "it; relative to it), a regular file of at most 30 KiB holding a JSON object with a `rules` list",
        _lifecycle_policy, targets=ECR),
    Key("repository-tags", "none", "ECR: resource tags for the repository, `key=value` pairs separated by commas",
        _repository_tags, (), ECR),
    Key("gar-location", "`us`", "GAR: the repository's location: a multi-region (`us`, `europe`, `asia`) or a region "
        "(`europe-west3`); the registry is `LOCATION-docker.pkg.dev`", _matching(_GAR_LOCATION_RE, "a GAR location "
        "such as us, europe or europe-west3"), "us", GAR),
    Key("gar-project", "the connection's project (its extra `project`, else the key's `project_id`)", "GAR: the "
        "Google Cloud project id", _matching(_GCP_PROJECT_RE, "a Google Cloud project id (6-30 lowercase letters, "
        "digits, hyphens)"), None, GAR),
    Key("gar-repository", "`mirror`", "GAR: the Artifact Registry repository (format DOCKER) images go into, "
        "created when missing; images are `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/project/image`",
        _matching(_GAR_REPOSITORY_RE, "an Artifact Registry repository id (lowercase letters, digits, hyphens, at "
                                      "most 63)"), "mirror", GAR),
    Key("gar-immutable-tags", "`false`", "GAR: `dockerConfig.immutableTags` of a repository DMI creates", _bool, False,
        GAR),
    Key("gar-kms-key-name", "Google-managed key", "GAR: `kmsKeyName`, the CMEK key "
        "`projects/P/locations/L/keyRings/R/cryptoKeys/K` of a repository DMI creates",
        _matching(_GCP_KMS_RE, "projects/P/locations/L/keyRings/R/cryptoKeys/K"), None, GAR),
    Key("gar-labels", "none", "GAR: `labels`, `key=value` pairs separated by commas (lowercase letters, digits, _ "
        "and -)", _labels, (), GAR),
    Key("gar-description", "none", "GAR: `description` of a repository DMI creates", _text, None, GAR),
    Key("gar-cleanup-policies", "none", "GAR: path to a JSON file in `config.ini`'s folder holding the API's "
        "`cleanupPolicies` object (policy id -> `{\"id\", \"action\": \"DELETE\"|\"KEEP\", \"condition\"|"
        "\"mostRecentVersions\"}`), at most 30 KiB", _cleanup_policies, None, GAR),
    Key("gar-cleanup-policy-dry-run", "`false`", "GAR: `cleanupPolicyDryRun`: `true` only logs what the cleanup "
        "policies would delete", _bool, False, GAR),
    Key("gar-api-endpoint", "`artifactregistry.googleapis.com`", "GAR: the Artifact Registry API's host (a Private "
        "Service Connect endpoint; `http://host:port` for a local stand-in)", _matching(_API_ENDPOINT_RE, "a host, "
        "host:port or http(s)://host:port"), "artifactregistry.googleapis.com", GAR),
    Key("acr-write-enabled", "as the registry has it", "ACR: `false` locks the repository against pushes and tag "
        "changes by others (`writeEnabled`); DMI lifts it for its own push and sets it again after", _bool, None, ACR),
    Key("acr-delete-enabled", "as the registry has it", "ACR: `false` protects the repository's images from "
        "deletion (`deleteEnabled`), set after each push", _bool, None, ACR),
    Key("acr-name", "the connection's host (an `azure_container_registry` connection's Registry Server)", "ACR: the "
        "registry's name; the registry is `NAME.azurecr.io` (`target-registry` for another host)",
        _matching(_ACR_NAME_RE, "an ACR registry name: 5-50 letters and digits"), None, ACR),
)
KEYS: dict[str, Key] = {k.name: k for k in KEY_TABLE}


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
