"""config.ini -> frozen dataclasses. Plain Python: no Airflow import here.

The original tool's format keeps working unchanged; new keys only extend it. Every problem in a
file is collected and reported together, each naming file:line, section, key, value and what is
allowed.
"""

from __future__ import annotations

import ast
import configparser
import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from dmi_provider.registry.reference import (
    DOCKER_HUB,
    InvalidReference,
    check_host,
    check_path,
    check_tag,
    normalize_repository,
)

DAG_PREFIX = "dmi_mirror"
DEFAULT = "DEFAULT"

# key -> one-line description of what is allowed (used in errors and by `dmi keys`).
KEYS: dict[str, str] = {
    "refresh": "0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w",
    "image": "the image name on the source registry, e.g. proxyv2 or library/alpine",
    "tag": "one tag, e.g. 1.7.0",
    "tags": "tags separated by commas or spaces, e.g. 1.7.0, 1.8.0",
    "source-repository": "the source namespace, e.g. istio (the image is source-repository/image)",
    "project": "the target namespace: the target repository is project/image",
    "source-registry": "host[:port] of the source registry (default docker.io)",
    "platforms": "os/arch[/variant] list, e.g. linux/amd64, linux/arm64 (default: all)",
    "target": "ecr (default) or registry",
    "target-registry": "host[:port] to push to (required for target = registry)",
    "target-repository": "the target repository path (default project/image)",
    "target-tag": "the tag to write at the target (only with a single source tag)",
    "insecure-registries": "hosts allowed over plain HTTP, separated by commas or spaces",
    "source-conn-id": "Airflow connection with credentials for the source registry",
    "target-conn-id": "Airflow connection with credentials for a target = registry registry",
    "aws-conn-id": "Airflow AWS connection for ECR (default aws_default)",
    "tracking-conn-id": "Airflow connection of the tracking database (default dmi_tracking; else SQLite)",
    "engine": "registry (default, no Docker daemon) or docker",
    "docker-url": "Docker daemon for engine = docker (default $DOCKER_HOST, else unix:///var/run/docker.sock)",
    "docker-conn-id": "Airflow Docker connection the daemon logs in with (engine = docker)",
    "keep-local-images": "true or false: keep pulled images on the daemon after a push (default false)",
    "scan-on-push": "true or false (ECR; default false)",
    "tag-mutability": "MUTABLE (default) or IMMUTABLE (ECR)",
    "encryption": "AES256 (default) or KMS (ECR)",
    "kms-key": "KMS key ARN or alias (ECR, with encryption = KMS)",
    "lifecycle-policy": "path to an ECR lifecycle policy JSON file (relative to config.ini)",
    "repository-tags": "key=value pairs for the ECR repository, separated by commas",
}
ECR_ONLY = ("aws-conn-id", "scan-on-push", "tag-mutability", "encryption", "kms-key", "lifecycle-policy",
            "repository-tags")
TARGETS = ("ecr", "registry")
ENGINES = ("registry", "docker")
_REFRESH_RE = re.compile(r"^([1-9][0-9]*)\s*([mhdw])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_PLATFORM_RE = re.compile(r"^[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?$")
_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$")


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    message: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = ""
        if self.section is not None:
            what += f" [{self.section}]"
        if self.key is not None:
            what += f" {self.key}"
            if self.value is not None:
                what += f" = {self.value!r}"
        return f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"


class ConfigError(ValueError):
    """All the problems found in one config file."""

    def __init__(self, issues: Iterable[ConfigIssue]):
        self.issues = tuple(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in the mirror configuration:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


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
    m = _REFRESH_RE.match(text)
    if not m:
        raise ValueError(KEYS["refresh"])
    interval = int(m.group(1)) * _UNITS[m.group(2)]
    # Canonical text: the largest unit that divides the interval exactly.
    for unit in ("w", "d", "h", "m"):
        n, rest = divmod(interval, _UNITS[unit])
        if not rest:
            return Refresh(f"{n}{unit}", interval)
    raise AssertionError("unreachable: minutes divide every interval")


def dag_id_for(refresh: Refresh, default: Refresh) -> str:
    if refresh == default:
        return DAG_PREFIX
    return f"{DAG_PREFIX}_{'once' if refresh.once else refresh.text}"


@dataclass(frozen=True)
class EcrSettings:
    scan_on_push: bool = False
    tag_mutability: str = "MUTABLE"
    encryption: str = "AES256"
    kms_key: str | None = None
    lifecycle_policy: str | None = None  # the policy JSON text, read from the file at parse time
    lifecycle_policy_path: str | None = None
    repository_tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MirrorSpec:
    """One config section: one source repository and its tags, and where they go."""

    section: str
    group_id: str
    dag_id: str
    refresh: Refresh
    source_registry: str
    source_repository: str  # normalised path, e.g. library/alpine
    tags: tuple[str, ...]
    target: str
    target_registry: str | None
    target_repository: str
    target_tag: str | None
    platforms: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    source_conn_id: str | None = None
    target_conn_id: str | None = None
    aws_conn_id: str = "aws_default"
    tracking_conn_id: str = "dmi_tracking"
    engine: str = "registry"
    docker_url: str | None = None
    docker_conn_id: str | None = None
    keep_local_images: bool = False
    ecr: EcrSettings = field(default_factory=EcrSettings)

    @property
    def source(self) -> str:
        return f"{self.source_registry}/{self.source_repository}"

    def target_tags(self) -> tuple[str, ...]:
        return (self.target_tag,) if self.target_tag else self.tags

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(source tag, target tag) for each tag this section mirrors."""
        return tuple(zip(self.tags, self.target_tags(), strict=True))

    def target_name(self, ecr_host: str | None = None) -> str:
        host = self.target_registry or ecr_host or "<ecr>"
        return f"{host}/{self.target_repository}"


@dataclass(frozen=True)
class Environment:
    """The legacy environment variables of the original tool."""

    cloud: str = "AWS"
    aws_account: str | None = None
    aws_region: str | None = None
    db_path: str | None = None

    def ecr_host(self) -> str | None:
        if self.aws_account and self.aws_region:
            return f"{self.aws_account}.dkr.ecr.{self.aws_region}.amazonaws.com"
        return None


@dataclass(frozen=True)
class MirrorConfig:
    path: str
    default_refresh: Refresh | None
    sections: tuple[MirrorSpec, ...]
    env: Environment

    def dags(self) -> dict[str, tuple[MirrorSpec, ...]]:
        out: dict[str, list[MirrorSpec]] = {}
        for spec in self.sections:
            out.setdefault(spec.dag_id, []).append(spec)
        return {k: tuple(v) for k, v in out.items()}

    def section(self, name: str) -> MirrorSpec:
        for spec in self.sections:
            if spec.section == name:
                return spec
        raise KeyError(name)


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,]+", value.strip()) if v]


def group_id_for(section: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", section).strip("_") or "section"


def _line_index(text: str) -> dict[tuple[str, str | None], int]:
    """(section, key) -> line number, and (section, None) -> the header's line."""
    index: dict[tuple[str, str | None], int] = {}
    section = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;" or raw[:1].isspace():
            continue
        if line.startswith("[") and "]" in line:
            section = line[1 : line.index("]")]
            index.setdefault((section, None), n)
        elif section is not None:
            key = re.split(r"[=:]", line, maxsplit=1)[0].strip().lower()
            index.setdefault((section, key), n)
    return index


class _Reader:
    """Collects issues while reading one file."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _line_index(text)
        self.issues: list[ConfigIssue] = []

    def add(self, section: str | None, key: str | None, value: str | None, message: str) -> None:
        line = None
        if section is not None:
            line = self.lines.get((section, key)) if key else None
            if line is None and key is not None:
                line = self.lines.get((DEFAULT, key))
            if line is None:
                line = self.lines.get((section, None))
        self.issues.append(ConfigIssue(self.path, message, section, key, value, line))


def _parser() -> configparser.ConfigParser:
    # DEFAULT is read as a plain section so that we know which keys a section set itself.
    parser = configparser.ConfigParser(
        default_section="\x00dmi-no-default", interpolation=None, strict=True, empty_lines_in_values=False
    )
    parser.optionxform = lambda optionstr: optionstr.strip().lower()  # type: ignore[method-assign]
    return parser


def read_environment(environ: Mapping[str, str], issues: list[ConfigIssue]) -> Environment:
    def bad(key: str, value: str, message: str) -> None:
        issues.append(ConfigIssue("environment", message, None, key, value))

    cloud = environ.get("CLOUD", "").strip() or "AWS"  # empty means unset, as in compose files
    if cloud.upper() != "AWS":
        bad("CLOUD", cloud, "only AWS is supported today")
    account = environ.get("AWS_ACCOUNT", "").strip() or None
    if account and not _ACCOUNT_RE.match(account):
        bad("AWS_ACCOUNT", account, "expected a 12-digit AWS account id")
    region = environ.get("AWS_DEFAULT_REGION", "").strip() or None
    if region and not _REGION_RE.match(region):
        bad("AWS_DEFAULT_REGION", region, "expected an AWS region such as us-east-1")
    db_path = environ.get("DB_PATH", "").strip() or None
    return Environment(cloud.upper(), account, region, db_path)


def current_environment(environ: Mapping[str, str] | None = None) -> Environment:
    """The legacy variables of this process, validated (ConfigError naming each bad one)."""
    issues: list[ConfigIssue] = []
    env = read_environment(os.environ if environ is None else environ, issues)
    if issues:
        raise ConfigError(issues)
    return env


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> MirrorConfig:
    """Read and validate a config file; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(name, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(name, f"cannot read: {exc}")]) from None
    return parse_config(text, name, environ)


def parse_config(text: str, path: str = "config.ini", environ: Mapping[str, str] | None = None) -> MirrorConfig:
    environ = os.environ if environ is None else environ
    reader = _Reader(path, text)
    parser = _parser()
    try:
        parser.read_string(text, source=path)
    except configparser.DuplicateSectionError as exc:
        raise ConfigError([ConfigIssue(path, "section appears twice", exc.section, line=exc.lineno)]) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            [ConfigIssue(path, "key appears twice in the section", exc.section, exc.option, line=exc.lineno)]
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            [ConfigIssue(path, "text before the first [section] header", line=exc.lineno)]
        ) from None
    except configparser.ParsingError as exc:
        raise ConfigError(
            [ConfigIssue(path, f"not an ini line: {ast.literal_eval(line).strip()!r}", line=n)
             for n, line in exc.errors]  # configparser keeps repr()s of the lines
        ) from None

    env = read_environment(environ, reader.issues)
    base_dir = Path(path).resolve().parent
    defaults = dict(parser[DEFAULT]) if parser.has_section(DEFAULT) else {}
    for key, value in defaults.items():
        _check_known(reader, DEFAULT, key, value)

    default_refresh = None
    if "refresh" in defaults:
        try:
            default_refresh = parse_refresh(defaults["refresh"])
        except ValueError as exc:
            reader.add(DEFAULT, "refresh", defaults["refresh"], str(exc))

    names = [s for s in parser.sections() if s != DEFAULT]
    if not names:
        reader.add(None, None, None, "no image sections: nothing to mirror (see README, 'config.ini')")
    specs = []
    for section in names:
        own = dict(parser[section])
        spec = _read_section(reader, section, own, defaults, default_refresh, base_dir)
        if spec is not None:
            specs.append(spec)
    _check_collisions(reader, specs)
    if reader.issues:
        raise ConfigError(reader.issues)
    return MirrorConfig(path, default_refresh, tuple(specs), env)


def _check_known(reader: _Reader, section: str, key: str, value: str) -> bool:
    if key in KEYS:
        return True
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}"
    reader.add(section, key, value, f"unknown key; {hint}")
    return False


def _read_section(
    reader: _Reader,
    section: str,
    own: dict[str, str],
    defaults: dict[str, str],
    default_refresh: Refresh | None,
    base_dir: Path,
) -> MirrorSpec | None:
    start = len(reader.issues)
    for key, value in own.items():
        _check_known(reader, section, key, value)
    merged = {**defaults, **own}

    def get(key: str) -> str | None:
        value = merged.get(key)
        return value.strip() if value is not None and value.strip() else None

    def bad(key: str, message: str) -> None:
        reader.add(section, key, merged.get(key), message)

    def choice(key: str, allowed: tuple[str, ...], default: str, upper: bool = False) -> str:
        value = get(key) or default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            bad(key, f"expected one of: {', '.join(allowed)}")
        return value

    # refresh
    refresh = default_refresh
    if "refresh" in own:
        try:
            refresh = parse_refresh(own["refresh"])
        except ValueError as exc:
            bad("refresh", str(exc))
    elif default_refresh is None and "refresh" not in defaults:
        reader.add(section, "refresh", None, f"missing: set refresh in [DEFAULT] or here ({KEYS['refresh']})")

    # source
    source_registry = DOCKER_HUB
    if get("source-registry"):
        try:
            source_registry = check_host(get("source-registry") or "")
        except InvalidReference as exc:
            bad("source-registry", str(exc))
    image = get("image")
    source_path = None
    if image is None:
        reader.add(section, "image", None, "missing: every section needs image (the name on the source registry)")
    else:
        namespace = get("source-repository")
        candidate = f"{namespace.strip('/')}/{image.strip('/')}" if namespace else image
        try:
            source_path = normalize_repository(source_registry, check_path(candidate))
        except InvalidReference as exc:
            bad("image" if not namespace or not _path_ok(image) else "source-repository", str(exc))

    # tags: a section's own tag/tags win over [DEFAULT]'s.
    tag_source = own if ("tag" in own or "tags" in own) else defaults
    tags: list[str] = []
    issues_before_tags = len(reader.issues)
    for key in ("tag", "tags"):
        if key in tag_source:
            for tag in _split(tag_source[key]):
                try:
                    check_tag(tag)
                except InvalidReference as exc:
                    reader.add(section, key, tag_source[key], str(exc))
                    continue
                if tag not in tags:
                    tags.append(tag)
    if not tags and len(reader.issues) == issues_before_tags:  # absent, or present but empty
        key = "tags" if "tags" in tag_source and "tag" not in tag_source else "tag"
        reader.add(section, key, tag_source.get(key), "missing: set tag (or tags) to the tag(s) to mirror")

    # target
    target = choice("target", TARGETS, "ecr")
    target_registry = None
    if get("target-registry"):
        try:
            target_registry = check_host(get("target-registry") or "")
        except InvalidReference as exc:
            bad("target-registry", str(exc))
    elif target == "registry":
        reader.add(section, "target-registry", None, "missing: target = registry needs target-registry (host[:port])")
    if target == "registry":
        for key in ECR_ONLY:
            if key in own:
                bad(key, "applies only to target = ecr")

    target_repository = None
    if get("target-repository"):
        try:
            target_repository = check_path((get("target-repository") or "").strip("/"))
        except InvalidReference as exc:
            bad("target-repository", str(exc))
    elif get("project") is None:
        reader.add(section, "project", None, "missing: set project (the target repository is project/image)")
    elif image is not None and _path_ok(image):
        try:
            target_repository = check_path(f"{(get('project') or '').strip('/')}/{image.strip('/')}")
        except InvalidReference as exc:
            bad("project", str(exc))

    target_tag = None
    if get("target-tag"):
        try:
            target_tag = check_tag(get("target-tag") or "")
        except InvalidReference as exc:
            bad("target-tag", str(exc))
        if len(tags) > 1:
            bad("target-tag", f"needs exactly one source tag, this section mirrors {len(tags)}: {', '.join(tags)}")

    platforms = tuple(dict.fromkeys(_split(get("platforms") or "")))
    for platform in platforms:
        if not _PLATFORM_RE.match(platform):
            bad("platforms", f"{platform!r} is not os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")

    insecure = []
    for host in _split(get("insecure-registries") or ""):
        try:
            insecure.append(check_host(host))
        except InvalidReference as exc:
            bad("insecure-registries", str(exc))

    conn_ids: dict[str, str | None] = {}
    for key in ("source-conn-id", "target-conn-id", "aws-conn-id", "tracking-conn-id", "docker-conn-id"):
        value = get(key)
        if value is not None and not _CONN_ID_RE.match(value):
            bad(key, "expected an Airflow connection id (letters, digits, _ . -)")
        conn_ids[key] = value

    engine = choice("engine", ENGINES, "registry")
    if engine == "docker" and platforms:
        bad("platforms", "engine = docker mirrors the daemon's own platform only: remove platforms, or use "
                         "engine = registry")
    docker_url = get("docker-url")
    if docker_url and not re.match(r"^(unix|tcp|https?|ssh|npipe)://\S+$", docker_url):
        bad("docker-url", "expected unix:///path/docker.sock, tcp://host:port, https://host:port or ssh://host")
    keep_local = _read_bool(get, bad, "keep-local-images")
    ecr = _read_ecr(get, bad, choice, base_dir)

    if len(reader.issues) > start or refresh is None or source_path is None or target_repository is None:
        return None
    return MirrorSpec(
        section=section,
        group_id=group_id_for(section),
        dag_id=dag_id_for(refresh, default_refresh or refresh),
        refresh=refresh,
        source_registry=source_registry,
        source_repository=source_path,
        tags=tuple(tags),
        target=target,
        target_registry=target_registry,
        target_repository=target_repository,
        target_tag=target_tag,
        platforms=platforms,
        insecure_registries=tuple(dict.fromkeys(insecure)),
        source_conn_id=conn_ids["source-conn-id"],
        target_conn_id=conn_ids["target-conn-id"],
        aws_conn_id=conn_ids["aws-conn-id"] or "aws_default",
        tracking_conn_id=conn_ids["tracking-conn-id"] or "dmi_tracking",
        engine=engine,
        docker_url=docker_url,
        docker_conn_id=conn_ids["docker-conn-id"],
        keep_local_images=keep_local,
        ecr=ecr,
    )


def _path_ok(path: str) -> bool:
    try:
        check_path(path)
    except InvalidReference:
        return False
    return True


def _read_bool(get: Callable[[str], str | None], bad: Callable[[str, str], None], key: str) -> bool:
    value = (get(key) or "false").lower()
    if value not in _BOOLS:
        bad(key, "expected true or false")
    return _BOOLS.get(value, False)


def _read_ecr(
    get: Callable[[str], str | None],
    bad: Callable[[str, str], None],
    choice: Callable[..., str],
    base_dir: Path,
) -> EcrSettings:
    scan = _read_bool(get, bad, "scan-on-push")
    mutability = choice("tag-mutability", ("MUTABLE", "IMMUTABLE"), "MUTABLE", upper=True)
    encryption = choice("encryption", ("AES256", "KMS"), "AES256", upper=True)
    kms_key = get("kms-key")
    if kms_key and encryption != "KMS":
        bad("kms-key", "needs encryption = KMS")
    policy_text = policy_path = None
    if get("lifecycle-policy"):
        policy_path = str(base_dir / (get("lifecycle-policy") or ""))
        try:
            policy_text = Path(policy_path).read_text(encoding="utf-8")
            policy = json.loads(policy_text)
            if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list):
                bad("lifecycle-policy", f"{policy_path}: expected a JSON object with a \"rules\" list")
        except FileNotFoundError:
            bad("lifecycle-policy", f"no such file: {policy_path}")
        except (OSError, UnicodeDecodeError) as exc:
            bad("lifecycle-policy", f"cannot read {policy_path}: {exc}")
        except json.JSONDecodeError as exc:
            bad("lifecycle-policy", f"{policy_path} is not JSON: {exc}")
    repo_tags: list[tuple[str, str]] = []
    for item in [i.strip() for i in (get("repository-tags") or "").split(",") if i.strip()]:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or len(key) > 128 or len(value) > 256:
            bad("repository-tags", f"{item!r}: expected key=value (key 1-128, value up to 256 characters)")
            continue
        repo_tags.append((key, value))
    return EcrSettings(scan, mutability, encryption, kms_key, policy_text, policy_path, tuple(repo_tags))


def _check_collisions(reader: _Reader, specs: list[MirrorSpec]) -> None:
    targets: dict[tuple[str, str, str, str], str] = {}
    groups: dict[tuple[str, str], str] = {}
    for spec in specs:
        for tag in spec.target_tags():
            key = (spec.target, spec.target_registry or "", spec.target_repository, tag)
            if key in targets:
                reader.add(
                    spec.section, None, None,
                    f"duplicate target {spec.target_name()}:{tag}: section [{targets[key]}] writes it too",
                )
            else:
                targets[key] = spec.section
        gkey = (spec.dag_id, spec.group_id)
        if gkey in groups:
            reader.add(
                spec.section, None, None,
                f"section name becomes task group id {spec.group_id!r} in DAG {spec.dag_id}, "
                f"as [{groups[gkey]}] does: rename one of them",
            )
        else:
            groups[gkey] = spec.section
