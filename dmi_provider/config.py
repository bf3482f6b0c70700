"""config.ini -> frozen dataclasses. Plain Python: no Airflow import here.

The original tool's format keeps working unchanged; new keys only extend it. Every problem in a
file is collected and reported together, each naming file:line, section, key, value and what is
allowed.
"""

from __future__ import annotations

import ast
import configparser
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dmi_provider.config_issues import DEFAULT, ConfigError, ConfigIssue, Reader
from dmi_provider.config_keys import CLOUDS, ENGINES, REFRESH_HELP, TARGETS, Refresh, parse_refresh
from dmi_provider.config_rules import Section, path_ok, tags_of, target_rules, verify_rules
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
__all__ = ["ENGINES", "KEYS", "KEY_TABLE", "TARGETS", "AcrSettings", "ConfigError", "ConfigIssue", "EcrSettings",
           "Environment", "GarSettings", "MirrorConfig", "MirrorSpec", "Refresh", "load_config", "parse_config",
           "parse_refresh", "section_spec"]
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$", re.ASCII)
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$", re.ASCII)


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


def lane_of(spec: MirrorSpec) -> str:
    """The task group a section's copies run in: one per source pool (and docker queue) of a DAG, so that every
    instance of a group shares one pool, one engine and one queue. docker.io -> docker_io; engine = docker
    sections -> docker_io__docker (and _<queue> with docker-queue)."""
    docker = "__docker" + (f"_{spec.engine.queue}" if spec.engine.queue else "") if spec.engine.name == "docker" else ""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", spec.budget.pool.removeprefix("dmi_") + docker).strip("_") or "source"


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
    reader = Reader(path, text)
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
    specs = _assign_docker_queues(specs)
    _check_collisions(reader, specs)
    if reader.issues:  # in the order of the file, the environment first
        raise ConfigError(sorted(reader.issues, key=lambda i: (i.file != "environment", i.line or 0)))
    return MirrorConfig(path, default_refresh, tuple(specs), env)


def section_spec(keys: Mapping[str, str], section: str = "mirror", environ: Mapping[str, str] | None = None,
                 base_dir: str | os.PathLike[str] = ".") -> MirrorSpec:
    """One section's spec from config.ini keys (key -> text), read and checked as in a file: for operators
    in a DAG of your own. `refresh` is not needed; ConfigError names each bad key."""
    reader = Reader("operator arguments", "")
    env = read_environment(os.environ if environ is None else environ, reader.issues)
    once = parse_refresh("0")
    own = {k.strip().lower(): str(v) for k, v in keys.items()}
    spec = _read_section(_File(reader, {"refresh": "0"}, once, Path(base_dir).resolve(), env), section, own)
    if reader.issues or spec is None:
        raise ConfigError(reader.issues)
    return _assign_docker_queues([spec])[0]  # docker-queue: the first of its queues


@dataclass(frozen=True)
class _File:
    """What every section of one file is read with."""

    reader: Reader
    defaults: dict[str, str]
    default_refresh: Refresh | None
    base_dir: Path
    env: Environment


def _check_known(reader: Reader, section: str, key: str, value: str) -> bool:
    if key in KEYS:
        return True
    # A key cut short (source-repo) is the key it starts; else the closest spelling.
    close = [k for k in KEYS if len(key) >= 4 and k.startswith(key)][:1] or difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}"
    reader.add(section, key, value, f"unknown key; {hint}")
    return False


def _read_section(file: _File, section: str, own: dict[str, str]) -> MirrorSpec | None:
    reader = file.reader
    for key, value in own.items():
        _check_known(reader, section, key, value)
    sec = Section(reader, section, own, file.defaults)
    sec.walk(file.base_dir, file.default_refresh)
    if not sec.given("target"):
        sec.values["target"] = file.env.default_target  # CLOUD picks the target of sections that name none
    refresh = sec.get("refresh")
    said = any(i.key == "refresh" for i in reader.issues[sec.start:])  # a bad value of its own, already named
    if refresh is None and not said and ("refresh" in own or "refresh" not in file.defaults):  # unset or empty
        reader.add(section, "refresh", None, f"missing: set refresh in [DEFAULT] or here ({REFRESH_HELP})")
    source_path = _source_path(sec)
    tags = tags_of(sec)
    target_repository = target_rules(sec, tags)
    verify_rules(sec)
    if len(reader.issues) > sec.start or not isinstance(refresh, Refresh) or not source_path or not target_repository:
        return None
    # The fields no single key sets (spec.py marks them `derived` or leaves them plain).
    worked_out = {
        "section": section, "dag_id": dag_id_for(refresh, file.default_refresh),
        "env": file.env, "source.repository": source_path, "target.repository": target_repository,
        "selection.tags": tags, "budget.pool": sec.get("source-pool") or default_pool(sec.get("source-registry")),
    }
    return build(MirrorSpec, sec.values, worked_out)


def _source_path(sec: Section) -> str | None:
    image, namespace = (sec.raw.get("image") or "").strip(), (sec.raw.get("source-repository") or "").strip()
    if not image:
        sec.reader.add(sec.name, "image", None, "missing: every section needs image (the name on the source registry)")
        return None
    candidate = f"{namespace.strip('/')}/{image.strip('/')}" if namespace else image
    try:
        return normalize_repository(str(sec.get("source-registry")), check_path(candidate))
    except InvalidReference as exc:
        sec.bad("image" if not namespace or not path_ok(image) else "source-repository", str(exc))
        return None


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


def _check_collisions(reader: Reader, specs: list[MirrorSpec]) -> None:
    targets: dict[str, str] = {}
    lanes: dict[tuple[str, str], MirrorSpec] = {}
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
        lane = lanes.setdefault((spec.dag_id, lane_of(spec)), spec)
        apart = (lane.budget.pool, lane.engine.name, lane.engine.queue) != (
            spec.budget.pool, spec.engine.name, spec.engine.queue)
        if apart:
            reader.add(spec.section, "source-pool", spec.budget.pool,
                       f"its task group would be {lane_of(spec)!r} in DAG {spec.dag_id}, as that of section "
                       f"{lane.section!r}, which uses another pool, engine or queue: rename one pool")
