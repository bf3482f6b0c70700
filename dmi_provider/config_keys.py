"""What config.ini's keys are made of: the Key record (name, default, what it accepts, its parser, the
targets it applies to), the parsers (text -> value, or ValueError with what is allowed) and the constants
they share. The keys themselves are declared on the spec's fields (dmi_provider/spec.py).
Plain Python: no Airflow import here."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dmi_provider.registry.network import check_ca_bundle, check_proxy
from dmi_provider.tags import check_pattern

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
GAR_LOCATION_RE = re.compile(r"^[a-z]+(?:-[a-z]+[0-9]+)?$", re.ASCII)  # us, europe, europe-west3
GCP_PROJECT_RE = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", re.ASCII)
GAR_REPOSITORY_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.ASCII)
GCP_KMS_RE = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$", re.ASCII)
_GCP_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$", re.ASCII)
_GCP_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$", re.ASCII)
ACR_NAME_RE = re.compile(r"^[a-zA-Z0-9]{5,50}$", re.ASCII)
API_ENDPOINT_RE = re.compile(r"^(?:https?://)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$", re.ASCII)
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


def read_small_file(path: Path, limit: int, what: str) -> str:
    """A small text file read at DAG parse time: it must be a regular file (a FIFO would hang parsing) of at
    most `limit` bytes; every failure a ValueError naming the path."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > limit:
        raise ValueError(f"{path} has {info.st_size} bytes; {what} has at most {limit}")
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def _json_file(value: str, base: Path) -> tuple[str, str, Any]:
    """(path, text, parsed JSON) of a file inside config.ini's folder: a regular file, size-capped (read at
    DAG parse time, so nothing may hang or escape there)."""
    folder = base.resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"{path} is outside the config's folder {folder}: keep policy files beside config.ini")
    text = read_small_file(path, MAX_POLICY_BYTES, "a policy file")
    try:
        return str(path), text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None


@dataclass(frozen=True)
class PolicyFile:
    """A policy JSON file beside config.ini, read at parse time: where it is, and its text."""

    path: str
    text: str


def _lifecycle_policy(value: str, base: Path) -> PolicyFile:
    """An ECR lifecycle policy."""
    path, text, policy = _json_file(value, base)
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list):
        raise ValueError(f"{path}: expected a JSON object with a \"rules\" list")
    return PolicyFile(path, text)


def _cleanup_policies(value: str, base: Path) -> PolicyFile:
    """GAR cleanup policies: the API's `cleanupPolicies` map, policy id -> policy."""
    path, text, policies = _json_file(value, base)
    if not isinstance(policies, dict) or not policies or not all(
            isinstance(p, dict) and p.get("action") in ("DELETE", "KEEP") for p in policies.values()):
        raise ValueError(f"{path}: expected the API's cleanupPolicies object: policy id -> {{\"id\": …, \"action\": "
                         "\"DELETE\" or \"KEEP\", \"condition\" or \"mostRecentVersions\": …}")
    return PolicyFile(path, text)


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


# -- a key --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    name: str
    default: str  # as documented
    help: str  # what it accepts
    parse: Parser = _text
    value: Any = None  # the value when the key is not set
    targets: tuple[str, ...] = ()  # the targets it applies to; empty: all


# -- the key table's fields (spec.py): each key declared once, on the field it sets ---------------------
KEY, KEYS_OF, NODE, FIELDS = "dmi.key", "dmi.keys", "dmi.node", "dmi.fields"


def key(name: str, default: str, help: str, parse: Any = _text, value: Any = None,
        targets: tuple[str, ...] = ()) -> Any:
    """A field set by one key: `default` as documented, `value` when the key is not set."""
    return field(default=value, metadata={KEY: Key(name, default, help, parse, value, targets)})


def derived(*keys: Key, default: Any = None) -> Any:
    """A field the section reader works out from several keys (config.py names how)."""
    return field(default=default, metadata={KEYS_OF: keys})


def node(cls: type, **keys: Key) -> Any:
    """A part of the tree: one of ours (its fields carry their keys), or a class of another module whose
    fields are set from `keys` (field name -> key)."""
    return field(default_factory=cls, metadata={NODE: cls, FIELDS: keys})
