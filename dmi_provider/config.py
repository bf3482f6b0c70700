"""config.ini -> frozen dataclasses. Plain Python: no Airflow import here.

The original tool's format keeps working unchanged; new keys only extend it. Every problem in a
file is collected and reported together, each naming file:line, section, key, value and what is
allowed.
"""

from __future__ import annotations

import ast
import configparser
import difflib
import functools
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dmi_provider.config_keys import CLOUDS, ENGINES, EXTRAS, REFRESH_HELP, TARGETS, Refresh, parse_refresh
from dmi_provider.registry.reference import InvalidReference, check_path, normalize_repository
from dmi_provider.spec import (
    KEY_TABLE,
    KEYS,
    AcrSettings,
    EcrSettings,
    Environment,
    GarSettings,
    MirrorSpec,
    build,
)

DAG_PREFIX = "dmi_mirror"
DEFAULT = "DEFAULT"
__all__ = ["ENGINES", "KEYS", "KEY_TABLE", "TARGETS", "AcrSettings", "ConfigError", "EcrSettings", "Environment",
           "GarSettings", "MirrorConfig", "MirrorSpec", "Refresh", "load_config", "parse_config", "parse_refresh"]
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$", re.ASCII)
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$", re.ASCII)


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
        parts = [where]
        if self.section is not None:
            parts.append(f"section {self.section!r}")  # not [name]: Airflow's rich CLI takes brackets for markup
        if self.key is not None:
            parts.append(self.key if self.value is None else f"{self.key} = {_hide_password(self.value)!r}")
        return ": ".join([*parts, self.message])


def _hide_password(value: str) -> str:
    """A URL's password never reaches an error message (a proxy URL written into config.ini)."""
    return re.sub(r"(://[^/:@\s]*:)[^@/\s]*@", r"\1***@", value)


class ConfigError(ValueError):
    """All the problems found in one config file."""

    def __init__(self, issues: Iterable[ConfigIssue]):
        self.issues = tuple(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in the mirror configuration:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


def default_pool(registry: str) -> str:
    """One Airflow pool per source host: docker.io -> dmi_docker_io, r.local:5000 -> dmi_r_local_5000."""
    return "dmi_" + re.sub(r"[^A-Za-z0-9]+", "_", registry).strip("_").lower()


def dag_id_for(refresh: Refresh, default: Refresh | None) -> str:
    """`dmi_mirror` for [DEFAULT]'s refresh; `dmi_mirror_R` for another (and for every section when
    [DEFAULT] sets none, so sections with different refreshes never share a schedule)."""
    if refresh == default:
        return DAG_PREFIX
    return f"{DAG_PREFIX}_{'once' if refresh.once else refresh.text}"


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

    cloud = (environ.get("CLOUD", "").strip() or "AWS").upper()  # empty means unset, as in compose files
    if cloud not in CLOUDS:
        bad("CLOUD", cloud, f"expected one of: {', '.join(CLOUDS)} (it sets the target of sections that set none)")
    elif CLOUDS[cloud] == "gar":
        cloud = "GOOGLE"
    account = environ.get("AWS_ACCOUNT", "").strip() or None
    if account and not _ACCOUNT_RE.fullmatch(account):
        bad("AWS_ACCOUNT", account, "expected a 12-digit AWS account id")
    region = environ.get("AWS_DEFAULT_REGION", "").strip() or None
    if region and not _REGION_RE.fullmatch(region):
        bad("AWS_DEFAULT_REGION", region, "expected an AWS region such as us-east-1")
    db_path = environ.get("DB_PATH", "").strip() or None
    return Environment(cloud, account, region, db_path)


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
    defaults = dict(parser[DEFAULT]) if parser.has_section(DEFAULT) else {}
    for key, value in defaults.items():
        _check_known(reader, DEFAULT, key, value)
    default_refresh = None
    if "refresh" in defaults:
        try:
            default_refresh = parse_refresh(defaults["refresh"])
        except ValueError as exc:
            reader.add(DEFAULT, "refresh", defaults["refresh"], str(exc))
    file = _File(reader, defaults, default_refresh, Path(path).resolve().parent, env)

    names = [s for s in parser.sections() if s != DEFAULT]
    if not names:
        reader.add(None, None, None, "no image sections: nothing to mirror (see README, 'config.ini')")
    specs = [spec for name in names if (spec := _read_section(file, name, dict(parser[name]))) is not None]
    _check_collisions(reader, specs)
    specs = _assign_docker_queues(specs)
    if reader.issues:  # in the order of the file, the environment first
        raise ConfigError(sorted(reader.issues, key=lambda i: (i.file != "environment", i.line or 0)))
    return MirrorConfig(path, default_refresh, tuple(specs), env)


def section_spec(keys: Mapping[str, str], section: str = "mirror", environ: Mapping[str, str] | None = None,
                 base_dir: str | os.PathLike[str] = ".") -> MirrorSpec:
    """One section's spec from config.ini keys (key -> text), read and checked as in a file: for operators
    in a DAG of your own. `refresh` is not needed; ConfigError names each bad key."""
    reader = _Reader("operator arguments", "")
    env = read_environment(os.environ if environ is None else environ, reader.issues)
    once = parse_refresh("0")
    own = {k.strip().lower(): str(v) for k, v in keys.items()}
    spec = _read_section(_File(reader, {"refresh": "0"}, once, Path(base_dir).resolve(), env), section, own)
    if reader.issues or spec is None:
        raise ConfigError(reader.issues)
    return spec


@dataclass(frozen=True)
class _File:
    """What every section of one file is read with."""

    reader: _Reader
    defaults: dict[str, str]
    default_refresh: Refresh | None
    base_dir: Path
    env: Environment


def _check_known(reader: _Reader, section: str, key: str, value: str) -> bool:
    if key in KEYS:
        return True
    # A key cut short (source-repo) is the key it starts; else the closest spelling.
    close = [k for k in KEYS if len(key) >= 4 and k.startswith(key)][:1] or difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}"
    reader.add(section, key, value, f"unknown key; {hint}")
    return False


class _Section:
    """One section being read: the raw values it sees (its own over [DEFAULT]'s) and the parsed ones."""

    def __init__(self, reader: _Reader, name: str, own: dict[str, str], defaults: dict[str, str]):
        self.reader, self.name, self.own = reader, name, own
        inherited = dict(defaults)
        if "tag" in own or "tags" in own:  # a section's own tag/tags replace [DEFAULT]'s, both keys
            inherited.pop("tag", None)
            inherited.pop("tags", None)
        self.raw = {**inherited, **own}
        self.values: dict[str, object] = {}
        self.start = len(reader.issues)

    def bad(self, key: str | None, message: str) -> None:
        self.reader.add(self.name, key, self.raw.get(key) if key else None, message)

    def given(self, key: str) -> bool:
        return bool((self.raw.get(key) or "").strip())

    def walk(self, base_dir: Path, default_refresh: Refresh | None) -> None:
        """Parse every key of the table that is set; unset keys take the table's value."""
        for key in KEY_TABLE:
            text = (self.raw.get(key.name) or "").strip()
            if key.name == "refresh" and "refresh" not in self.own:
                self.values["refresh"] = default_refresh  # [DEFAULT]'s was checked (and reported) once
            elif not text:
                self.values[key.name] = key.value
            else:
                try:
                    self.values[key.name] = key.parse(text, base_dir)
                except ValueError as exc:
                    self.bad(key.name, str(exc))
                    self.values[key.name] = key.value

    def get(self, key: str) -> Any:
        return self.values.get(key)


def _read_section(file: _File, section: str, own: dict[str, str]) -> MirrorSpec | None:
    reader = file.reader
    for key, value in own.items():
        _check_known(reader, section, key, value)
    sec = _Section(reader, section, own, file.defaults)
    sec.walk(file.base_dir, file.default_refresh)
    if not sec.given("target"):
        sec.values["target"] = file.env.default_target  # CLOUD picks the target of sections that name none
    refresh = sec.get("refresh")
    if refresh is None and "refresh" not in own and "refresh" not in file.defaults:
        reader.add(section, "refresh", None, f"missing: set refresh in [DEFAULT] or here ({REFRESH_HELP})")
    source_path = _source_path(sec)
    tags = _tags(sec)
    target_repository = _target_rules(sec, tags)
    if len(reader.issues) > sec.start or not isinstance(refresh, Refresh) or not source_path or not target_repository:
        return None
    # The fields no single key sets (spec.py marks them `derived` or leaves them plain).
    worked_out = {
        "section": section, "group_id": group_id_for(section), "dag_id": dag_id_for(refresh, file.default_refresh),
        "env": file.env, "source.repository": source_path, "target.repository": target_repository,
        "selection.tags": tags, "budget.pool": sec.get("source-pool") or default_pool(sec.get("source-registry")),
    }
    return build(MirrorSpec, sec.values, worked_out)  # type: ignore[no-any-return]


def _source_path(sec: _Section) -> str | None:
    image, namespace = (sec.raw.get("image") or "").strip(), (sec.raw.get("source-repository") or "").strip()
    if not image:
        sec.reader.add(sec.name, "image", None, "missing: every section needs image (the name on the source registry)")
        return None
    candidate = f"{namespace.strip('/')}/{image.strip('/')}" if namespace else image
    try:
        return normalize_repository(str(sec.get("source-registry")), check_path(candidate))
    except InvalidReference as exc:
        sec.bad("image" if not namespace or not _path_ok(image) else "source-repository", str(exc))
        return None


FILTER_KEYS = ("tags-matching", "tags-excluding", "tags-semver", "tags-newest")  # what makes TagFilter.active


def _tags(sec: _Section) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys([*sec.get("tag"), *sec.get("tags")]))  # type: ignore[misc]
    if not tags and not any(sec.given(k) for k in FILTER_KEYS) and not any(
            i.key in ("tag", "tags") for i in sec.reader.issues[sec.start:]):
        key = "tags" if "tags" in sec.raw and "tag" not in sec.raw else "tag"
        sec.reader.add(sec.name, key, sec.raw.get(key), "missing: set tag (or tags) to the tag(s) to mirror, or a "
                                                        "tags-* filter")
    if len(tags) > sec.get("tags-max"):  # type: ignore[operator]
        sec.bad("tags" if sec.get("tags") else "tag", f"names {len(tags)} tags, more than tags-max = "
                f"{sec.get('tags-max')}: split the section or raise tags-max (at most 1000)")
    return tags


def _target_rules(sec: _Section, tags: tuple[str, ...]) -> str | None:
    """Rules between keys; returns the target repository."""
    target = sec.get("target")
    if target == "registry" and not sec.get("target-registry") and not sec.given("target-registry"):
        sec.reader.add(sec.name, "target-registry", None,
                       "missing: target = registry needs target-registry (host[:port])")
    for key in KEY_TABLE:
        if key.targets and key.name in sec.own and target in TARGETS and target not in key.targets:
            sec.bad(key.name, f"applies only to target = {' or '.join(key.targets)}")
    if sec.get("target-tag") and len(tags) > 1:
        sec.bad("target-tag", f"needs exactly one source tag, this section mirrors {len(tags)}: {', '.join(tags)}")
    elif sec.get("target-tag") and any(sec.get(k) for k in FILTER_KEYS):
        sec.bad("target-tag", "cannot rename tags chosen by tags-* filters: remove target-tag or the filters")
    for key in ("tag", "tags"):
        if any(t.startswith("@") for t in sec.get(key) or ()) and not sec.get("target-tag"):  # type: ignore[union-attr]
            sec.bad(key, "a digest without a tag (@sha256:…) needs target-tag: the tag to write at the target")
    if sec.get("engine") == "docker" and sec.get("platforms"):
        sec.bad("platforms", "engine = docker mirrors the daemon's own platform only: remove platforms, or use "
                             "engine = registry")
    for key in ("source-proxy", "target-proxy", "source-ca-bundle", "target-ca-bundle"):
        if sec.get("engine") == "docker" and key in sec.own:  # from [DEFAULT] it serves the other sections
            sec.bad(key, "engine = docker reaches registries through the daemon, which has its own proxy and CA "
                         "settings (dockerd's HTTPS_PROXY, /etc/docker/certs.d): remove it, or use engine = registry")
    if sec.get("docker-queue") and sec.get("engine") != "docker" and "docker-queue" in sec.own:
        sec.bad("docker-queue", "applies only to engine = docker (the registry engine's tasks run on any worker)")
    if sec.get("kms-key") and sec.get("encryption") != "KMS":
        sec.bad("kms-key", "needs encryption = KMS")
    _cloud_rules(sec)
    if sec.given("target-repository"):
        return sec.get("target-repository")  # type: ignore[return-value]
    project, image = (sec.raw.get("project") or "").strip(), (sec.raw.get("image") or "").strip()
    if not project:
        sec.reader.add(sec.name, "project", None, "missing: set project (the target repository is project/image)")
    elif image and _path_ok(image):
        try:
            return check_path(f"{project.strip('/')}/{image.strip('/')}")
        except InvalidReference as exc:
            sec.bad("project", str(exc))
    return None


SOURCE_HOSTS = {"ecr": "the ECR host, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "gar": "the GAR host, e.g. europe-west3-docker.pkg.dev", "acr": "the ACR host, e.g. NAME.azurecr.io"}


def _cloud_rules(sec: _Section) -> None:
    """A cloud source names its host; a cloud needs its extra installed (the pip line says which)."""
    source, target = sec.get("source"), sec.get("target")
    if source in SOURCE_HOSTS and not sec.given("source-registry"):
        sec.reader.add(sec.name, "source-registry", None, f"missing: source = {source} needs source-registry: "
                                                          f"{SOURCE_HOSTS[source]}")
    for key, kind in (("target", target), ("source", source)):
        missing = [extra for module, extra in EXTRAS.get(str(kind), ()) if not _installed(module)]
        if missing:
            sec.bad(key, f"{key} = {kind} needs the {missing[0]} extra: pip install "
                         f"'airflow-provider-dmi[{missing[0]}]'")
            return


@functools.cache
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _assign_docker_queues(specs: list[MirrorSpec]) -> list[MirrorSpec]:
    """Each section with docker-queue gets one of its queues, in turn over the sections naming the same ones
    (config order), so the daemons share the work."""
    turns: dict[tuple[str, ...], int] = {}
    out = []
    for spec in specs:
        queues = spec.engine.queues
        if queues and spec.engine.name == "docker":
            turn = turns.get(queues, 0)
            turns[queues] = turn + 1
            spec = replace(spec, engine=replace(spec.engine, queue=queues[turn % len(queues)]))
        out.append(spec)
    return out


def _path_ok(path: str) -> bool:
    try:
        check_path(path)
    except InvalidReference:
        return False
    return True


def _check_collisions(reader: _Reader, specs: list[MirrorSpec]) -> None:
    targets: dict[str, str] = {}
    groups: dict[tuple[str, str], str] = {}
    for spec in specs:
        for tag in spec.target_tags():
            key = f"{spec.target.kind} {spec.target_name()}:{tag}"
            if key in targets:
                reader.add(
                    spec.section, None, None,
                    f"duplicate target {spec.target_name()}:{tag}: section {targets[key]!r} writes it too",
                )
            else:
                targets[key] = spec.section
        gkey = (spec.dag_id, spec.group_id)
        if gkey in groups:
            reader.add(
                spec.section, None, None,
                f"section name becomes task group id {spec.group_id!r} in DAG {spec.dag_id}, "
                f"as section {groups[gkey]!r} does: rename one of them",
            )
        else:
            groups[gkey] = spec.section
