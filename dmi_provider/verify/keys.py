"""Trusted public keys (PEM, as `cosign generate-key-pair` writes cosign.pub) and the signature checks
against them. Plain Python: no Airflow import here.

The hash per key follows sigstore's algorithm registry (sigstore/sigstore `pkg/signature`): P-256 with
SHA-256, P-384 with SHA-384, P-521 with SHA-512, RSA PKCS#1 v1.5 with SHA-256, Ed25519 pure. For P-384 and
P-521, SHA-256 is accepted too: cosign before v2.6 signed every ECDSA key over SHA-256, and `cosign verify
--key` still checks so.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dmi_provider.errors import DmiError, first_line

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
# First the hash sigstore's registry names for the curve, then SHA-256 (older cosign, `cosign verify --key`).
ECDSA_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
    "secp521r1": (hashes.SHA512, hashes.SHA256),
}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MIN_RSA_BITS = 2048
SUPPORTED = "ECDSA P-256, P-384 or P-521, Ed25519, or RSA of 2048 bits or more"
_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CERTIFICATES = {b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE", b"CERTIFICATE REQUEST"}
_PUBLIC = {b"PUBLIC KEY", b"RSA PUBLIC KEY"}


class KeyRefused(DmiError):
    """A verify key that cannot be used: garbage, a private key, a certificate, a weak or unknown kind."""

    retryable = False


@dataclass(frozen=True)
class TrustedKey:
    """A public key signatures are checked against; `where` says where it came from (a file, a connection)."""

    where: str
    fingerprint: str  # "SHA256:" + hex of SHA-256 over the DER SubjectPublicKeyInfo
    public_key: PublicKey = field(compare=False, repr=False)

    @property
    def short(self) -> str:
        """The fingerprint cut for messages (the full one is in `fingerprint`)."""
        return self.fingerprint[:19] + "…"

    @property
    def hints(self) -> frozenset[str]:
        """The ways a signature names this key: our fingerprint, its hex, and a sigstore bundle's `hint`
        (base64 of the same SHA-256)."""
        raw = bytes.fromhex(self.fingerprint.removeprefix("SHA256:"))
        return frozenset({self.fingerprint, raw.hex(), base64.b64encode(raw).decode()})


def fingerprint_of(public_key: PublicKeyTypes) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def load_key(where: str, pem: bytes | str) -> TrustedKey:
    """One PEM public key, checked to be a kind cosign signs with; `KeyRefused` names `where` and why."""
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    labels = _BLOCK.findall(data)
    if any(b"PRIVATE KEY" in label for label in labels):
        raise KeyRefused(f"{where}: this is a private key; give the public key (cosign.pub), never the private one")
    if any(label in _CERTIFICATES for label in labels):
        raise KeyRefused(f"{where}: this is a certificate; keyless (certificate) verification is not supported "
                         "yet: give the signer's public key (cosign.pub)")
    if not labels:
        hint = " (an SSH key? give a PEM public key)" if data.lstrip().startswith((b"ssh-", b"ecdsa-sha2")) else ""
        raise KeyRefused(f"{where}: not a PEM public key: no -----BEGIN PUBLIC KEY----- block{hint}")
    public = [label for label in labels if label in _PUBLIC]
    if not public:
        raise KeyRefused(f"{where}: a PEM {labels[0].decode()!r} block, not a PUBLIC KEY")
    if len(labels) > 1:
        raise KeyRefused(f"{where}: holds {len(labels)} PEM blocks; give one public key per entry")
    try:
        key = _usable(where, serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyRefused(f"{where}: the PUBLIC KEY block does not parse ({first_line(exc, 120)})") from None
    return TrustedKey(where, fingerprint_of(key), key)


def _usable(where: str, key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ECDSA_HASHES:
            raise KeyRefused(f"{where}: ECDSA curve {key.curve.name} is not supported ({SUPPORTED})")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyRefused(f"{where}: an RSA key of {key.key_size} bits is too short ({MIN_RSA_BITS} at least)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    kind = type(key).__name__.removeprefix("_").removesuffix("PublicKey") or "this"
    raise KeyRefused(f"{where}: {kind} keys are not supported ({SUPPORTED})")


def load_keys(items: Iterable[tuple[str, bytes | str]]) -> tuple[TrustedKey, ...]:
    """Several keys (key rotation: a signature by any of them counts); a key given twice is kept once."""
    out: dict[str, TrustedKey] = {}
    for where, pem in items:
        key = load_key(where, pem)
        out.setdefault(key.fingerprint, key)
    return tuple(out.values())


def describe(key: TrustedKey) -> str:
    """The kind of key, for messages: 'ECDSA P-256', 'Ed25519', 'RSA 3072'."""
    k = key.public_key
    if isinstance(k, ec.EllipticCurvePublicKey):
        return f"ECDSA {CURVE_NAMES[k.curve.name]}"
    if isinstance(k, rsa.RSAPublicKey):
        return f"RSA {k.key_size}"
    return "Ed25519"


def verifies(key: TrustedKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` was made with `key`'s private key, as cosign signs."""
    k = key.public_key
    try:
        if isinstance(k, ed25519.Ed25519PublicKey):
            k.verify(signature, data)
            return True
        if isinstance(k, rsa.RSAPublicKey):
            k.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return _ecdsa_verifies(k, signature, data)


def _ecdsa_verifies(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    for der in _ecdsa_forms(key, signature):
        for algorithm in ECDSA_HASHES[key.curve.name]:
            try:
                key.verify(der, data, ec.ECDSA(algorithm()))
                return True
            except InvalidSignature:
                continue
    return False


def _ecdsa_forms(key: ec.EllipticCurvePublicKey, signature: bytes) -> list[bytes]:
    """DER as cosign writes it; also r||s (IEEE P1363), which sigstore's verifier accepts."""
    forms = [signature]
    width = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * width:
        forms.append(encode_dss_signature(int.from_bytes(signature[:width]), int.from_bytes(signature[width:])))
    return forms


def signed_by(keys: Iterable[TrustedKey], signature: bytes, data: bytes) -> TrustedKey | None:
    """The first of `keys` that made `signature` over `data`, or None."""
    return next((key for key in keys if verifies(key, signature, data)), None)


def named_by(keys: Iterable[TrustedKey], hint: str | None) -> TrustedKey | None:
    """The key a signature's unsigned key hint names, if it is one of `keys` (only to word a failure)."""
    return next((key for key in keys if hint and hint in key.hints), None) if hint else None
