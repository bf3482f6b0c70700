"""The `verify*` keys (verify before publish) and the part of a section's spec they set (`VerifySpec`):
public keys, required attestations and annotations, each checked when config.ini is read. Plain Python: no
Airflow import here; a key held by an Airflow connection or variable is read by the task
(dmi_provider/hooks/connections.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dmi_provider.config_keys import _choice, _one, key, read_small_file, split_list
from dmi_provider.errors import DmiError
from dmi_provider.registry.reference import check_path
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
    text = read_small_file(path, MAX_KEY_BYTES, "a public key file")
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


@dataclass(frozen=True)
class VerifySpec:
    """Verify before publish: what an image must carry before the target tag is written (see "Verify before
    publish")."""

    mode: str = key(
        "verify", "`none`", "`signature`: the target tag is written only once a cosign signature of the image's "
        "digest by one of `verify-keys` verifies, as the target holds it after the copy; `attestations`: and the "
        "in-toto attestations of `verify-attestations`, signed by one of them; `none`: no check. Needs "
        "`engine = registry` and `referrers = true`", _choice(*VERIFY_MODES), "none")
    keys: tuple[KeySource, ...] = key(
        "verify-keys", "none (required by `verify`)", "public keys, any one of which may sign (so keys rotate): PEM "
        "files (relative to config.ini's folder; ECDSA P-256/P-384/P-521, Ed25519, RSA ≥ 2048 bits, as `cosign "
        "generate-key-pair` and KMS keys export), `connection:ID` (the connection's password or extra "
        "`public_key`) or `variable:NAME`; a private key is refused", verify_keys, ())
    attestations: tuple[str, ...] = key(
        "verify-attestations", "none", "`verify = attestations`: predicate types that must be present, each in a "
        "statement about the digest signed by one of `verify-keys`: `slsa` (provenance v1 or v0.2), `spdx`, "
        "`cyclonedx`, `vuln`, or full URIs; none listed: at least one signed attestation", verify_attestations, ())
    annotations: tuple[tuple[str, str], ...] = key(
        "verify-annotations", "none", "`key=value` claims the signature's payload must carry (`cosign sign -a "
        "key=value`), separated by commas", verify_annotations, ())
    on_failure: str = key(
        "on-verify-failure", "`fail`", "`fail`: an image that does not verify fails its group and is not published "
        "(the target tag keeps what it had); `quarantine`: it is tagged in `quarantine-repository` instead, and "
        "fails its group too", _choice(*ON_FAILURE), "fail")
    quarantine_repository: str | None = key(
        "quarantine-repository", "`quarantine/<target repository>`", "`on-verify-failure = quarantine`: the target "
        "registry's repository where images that did not verify are tagged (for inspection)", _one(check_path))
