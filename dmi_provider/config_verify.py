"""The `verify*` keys (verify before publish): public keys, required attestations and annotations, each
checked when config.ini is read. Plain Python: no Airflow import here; a key held by an Airflow connection or
variable is read by the task (dmi_provider/hooks/connections.py)."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from dmi_provider.config_keys import split_list
from dmi_provider.errors import DmiError
from dmi_provider.verify import load_key, predicate_types

MAX_KEY_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,250}")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9_./-]{1,128}")
VERIFY_MODES = ("none", "signature", "attestations")
ON_FAILURE = ("fail", "quarantine")


@dataclass(frozen=True)
class KeySource:
    """Where a public key comes from: `file` (its PEM read with config.ini), `connection` or `variable` (read
    by the task that verifies)."""

    kind: str
    ref: str
    pem: str | None = None  # a file's text

    @property
    def where(self) -> str:
        return self.ref if self.kind == "file" else f"{self.kind} {self.ref}"


def _key_file(value: str, base: Path) -> KeySource:
    path = (base / value).resolve()
    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"{path}: {'no such file' if isinstance(exc, FileNotFoundError) else exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > MAX_KEY_BYTES:
        raise ValueError(f"{path} has {info.st_size} bytes: a public key file has at most {MAX_KEY_BYTES}")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        load_key(str(path), text)
    except DmiError as exc:
        raise ValueError(str(exc)) from None
    return KeySource("file", str(path), text)


def _one_key(value: str, base: Path) -> KeySource:
    kind, sep, ref = value.partition(":")
    if sep and kind in ("connection", "variable"):
        if not _NAME.fullmatch(ref):
            raise ValueError(f"{value!r}: expected {kind}:NAME (letters, digits, _ . -)")
        return KeySource(kind, ref)
    return _key_file(value, base)


def verify_keys(value: str, base: Path) -> tuple[KeySource, ...]:
    """PEM files (relative to config.ini's folder), `connection:ID` (its password, or extra `public_key`) or
    `variable:NAME`; every bad one named at once."""
    keys, bad = [], []
    for item in dict.fromkeys(split_list(value)):
        try:
            keys.append(_one_key(item, base))
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        raise ValueError("; ".join(bad))
    return tuple(keys)


def verify_attestations(value: str, _base: Path) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(split_list(value)))
    for name in names:
        try:
            predicate_types(name)
        except DmiError as exc:
            raise ValueError(str(exc)) from None
    return names


def verify_annotations(value: str, _base: Path) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in [i.strip() for i in value.split(",") if i.strip()]:
        key, sep, val = (part.strip() for part in item.partition("="))
        if not sep or not _ANNOTATION_KEY.fullmatch(key) or not val:
            raise ValueError(f"{item!r}: expected key=value, separated by commas (as `cosign sign -a key=value`)")
        pairs.append((key, val))
    return tuple(pairs)
