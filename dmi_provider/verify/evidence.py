"""The signatures and attestations around an image, read from the manifests and blobs a caller hands in.
Plain Python: no Airflow import here, no network: blobs come from the caller's `blob(digest)`.

Nothing here decides: each signature found becomes a `Claim` (the exact bytes signed, the signatures, what
the signed content says), each thing that cannot be checked a `Refusal` with its reason. `check.verify`
weighs them against the keys and the policy. Everything read is untrusted: blobs are capped (1 MiB, 50 layers
a manifest) and hashed before use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from dmi_provider.errors import DmiError
from dmi_provider.verify.keys import fingerprint_of

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
BUNDLE = "application/vnd.dev.sigstore.bundle"  # v0.3+json, or +json;version=0.3
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
REKOR_ANNOTATION = "dev.sigstore.cosign/bundle"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
# `cosign sign --new-bundle-format` signs an in-toto statement of this type: a signature, not an attestation.
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
MAX_BLOB = 1 << 20
MAX_LAYERS = 50
MAX_MANIFEST = 4 << 20
MAX_SIGNATURES = 16  # in one DSSE envelope
KEYLESS = "keyless signature present but not supported yet"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

Blob = Callable[[str], bytes]


class EvidenceError(DmiError):
    """A signature or attestation that cannot be read: too large, not matching its digest, malformed."""

    retryable = False


@dataclass(frozen=True)
class Evidence:
    """What the caller found around one digest, as raw manifest bytes, and how to read their blobs.

    `signatures`: cosign `sha256-<hex>.sig` manifests; `attestations`: cosign `.att` manifests; `referrers`:
    OCI 1.1 referrer manifests of the digest (others than signatures and attestations are ignored). `blob`
    reads a blob by digest (from the target); what it raises propagates.
    """

    blob: Blob
    signatures: tuple[bytes, ...] = ()
    attestations: tuple[bytes, ...] = ()
    referrers: tuple[bytes, ...] = ()


def evidence_from(signature_manifest: bytes | None, attestation_manifest: bytes | None,
                  referrers: Iterable[bytes], blob: Blob) -> Evidence:
    """`Evidence` from the `.sig` and `.att` manifests (None: the tag is absent) and the referrer manifests."""
    return Evidence(blob, tuple(m for m in (signature_manifest,) if m is not None),
                    tuple(m for m in (attestation_manifest,) if m is not None), tuple(referrers))


@dataclass(frozen=True)
class Statement:
    """What signed content says: the digests it names (each with its annotations) and, for in-toto, the
    predicate type."""

    role: str  # "signature" or "attestation"
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    predicate_type: str | None = None


@dataclass(frozen=True)
class Claim:
    """One signed thing: `message` is exactly what the `signatures` cover (a payload, a DSSE PAE)."""

    where: str
    role: str
    message: bytes
    signatures: tuple[bytes, ...]
    statement: Statement | None
    problem: str | None = None  # why the content cannot count even when a signature verifies
    hint: str | None = None  # unsigned: the key the signer says it used (for wording only)
    keyless: bool = False  # a certificate is attached

    @property
    def predicate_type(self) -> str | None:
        return self.statement.predicate_type if self.statement else None


@dataclass(frozen=True)
class Refusal:
    """Something that looks like a signature or an attestation but cannot be checked, and why."""

    where: str
    role: str  # "signature", "attestation", or "either" (a referrer whose kind is unknown)
    text: str
    keyless: bool = False
    predicate_type: str | None = None  # unsigned (a layer annotation), for wording only


Item = Claim | Refusal


def collect(digest: str, evidence: Evidence) -> list[Item]:
    """Every signature and attestation in `evidence` about `digest`, read and parsed, none yet trusted."""
    items: list[Item] = []
    for label, role, manifests in (("cosign .sig", "signature", evidence.signatures),
                                   ("cosign .att", "attestation", evidence.attestations)):
        for n, raw in enumerate(manifests, 1):
            items += _manifest_items(label if len(manifests) == 1 else f"{label} #{n}", role, raw, evidence.blob)
    for raw in evidence.referrers:
        label = "referrer " + short("sha256:" + hashlib.sha256(raw).hexdigest())
        items += _manifest_items(label, "either", raw, evidence.blob, subject=digest)
    return items


def short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 20 else digest


def _manifest_items(label: str, role: str, raw: bytes, blob: Blob, subject: str | None = None) -> list[Item]:
    try:
        layers, outer = _layers(label, raw, subject)
    except EvidenceError as exc:
        return [Refusal(label, role, str(exc).removeprefix(f"{label}: "))]
    out: list[Item] = []
    for i, layer in enumerate(layers, 1):
        where = label if len(layers) == 1 else f"{label} layer {i}"
        layer_role = _role_of(layer, outer, role)
        annotations = _annotations(layer)
        try:
            out.append(_layer_item(where, layer_role, layer, blob))
        except EvidenceError as exc:
            out.append(Refusal(where, layer_role, str(exc).removeprefix(f"{where}: "),
                               predicate_type=annotations.get("predicateType")))
    return out


def _layers(label: str, raw: bytes, subject: str | None) -> tuple[list[dict], dict[str, str]]:
    """The manifest's signature and attestation layers (a referrer's only when its subject is `subject`), and
    the manifest's annotations."""
    if len(raw) > MAX_MANIFEST:
        raise EvidenceError(f"{label}: the manifest is {len(raw)} bytes, more than {MAX_MANIFEST}: refused")
    manifest = parse_json(label, "the manifest", raw)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        if subject:  # a referrer index, or an artifact of its own shape: not a signature
            return [], {}
        raise EvidenceError(f"{label}: not an image manifest (no layers list)")
    picked = [layer for layer in manifest["layers"] if isinstance(layer, dict) and _kind(layer) is not None]
    if not picked and not subject:
        raise EvidenceError(f"{label}: no layer of a signature type ({SIMPLE_SIGNING}, {DSSE} or a sigstore bundle)")
    if len(picked) > MAX_LAYERS:
        raise EvidenceError(f"{label}: {len(picked)} signature layers, more than {MAX_LAYERS}: refused")
    named = manifest["subject"].get("digest") if isinstance(manifest.get("subject"), dict) else None
    if subject and picked and named != subject:
        raise EvidenceError(f"{label}: the referrer's subject is {named or 'missing'}, not {subject}")
    return picked, _annotations(manifest)


def _annotations(layer: dict) -> dict[str, str]:
    found = layer.get("annotations")
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


def _kind(layer: dict) -> str | None:
    media = layer.get("mediaType")
    if media in (SIMPLE_SIGNING, DSSE):
        return media
    return BUNDLE if isinstance(media, str) and media.startswith(BUNDLE) else None


def _role_of(layer: dict, outer: dict[str, str], role: str) -> str:
    """A referrer layer's role, as far as its media type and the annotations (the layer's, the manifest's:
    cosign puts a bundle's predicate type there) tell before reading it."""
    if role != "either":
        return role
    if _kind(layer) == SIMPLE_SIGNING:
        return "signature"
    annotations = outer | _annotations(layer)
    predicate = annotations.get(BUNDLE_PREDICATE_ANNOTATION) or annotations.get("predicateType")
    if predicate == COSIGN_SIGN:
        return "signature"
    return "attestation" if predicate or _kind(layer) == DSSE else "either"


def _layer_item(where: str, role: str, layer: dict, blob: Blob) -> Item:
    data = read_blob(where, layer, blob)
    annotations = _annotations(layer)
    keyless = CERTIFICATE_ANNOTATION in annotations
    if _kind(layer) == SIMPLE_SIGNING:
        return _simple_signing(where, data, annotations)
    if _kind(layer) == DSSE:
        return envelope_claim(where, role, parse_json(where, "the DSSE envelope", data), keyless=keyless)
    return bundle_item(where, role, data)


def read_blob(where: str, descriptor: dict, blob: Blob) -> bytes:
    """The blob a layer descriptor names, refused past 1 MiB and checked against its digest and size."""
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise EvidenceError(f"{where}: the layer's digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise EvidenceError(f"{where}: the layer {short(digest)} has no valid size ({size!r})")
    if size > MAX_BLOB:
        raise EvidenceError(f"{where}: the layer {short(digest)} is {size} bytes, more than 1 MiB: refused")
    data = blob(digest)
    if len(data) > MAX_BLOB:
        raise EvidenceError(f"{where}: the blob {short(digest)} read {len(data)} bytes, more than 1 MiB: refused")
    found = "sha256:" + hashlib.sha256(data).hexdigest()
    if found != digest:
        raise EvidenceError(f"{where}: the bytes read for {digest} hash to {found}: refused")
    if len(data) != size:
        raise EvidenceError(f"{where}: the blob {short(digest)} is {len(data)} bytes, the manifest says {size}")
    return data


def parse_json(where: str, what: str, data: bytes | str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise EvidenceError(f"{where}: {what} is not JSON") from None


def b64(where: str, what: str, text: object) -> bytes:
    """Standard or URL-safe base64 (DSSE allows both), padding optional; anything else refused."""
    if not isinstance(text, str) or not text.strip():
        raise EvidenceError(f"{where}: {what} is missing or not a string")
    s = text.strip()
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_" if "-" in s or "_" in s else None,
                                validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"{where}: {what} is not base64") from None


def _simple_signing(where: str, payload: bytes, annotations: dict[str, str]) -> Claim:
    """A cosign `.sig` layer: the signature (annotation) covers the payload blob's exact bytes."""
    if SIGNATURE_ANNOTATION not in annotations:
        raise EvidenceError(f"{where}: the layer has no {SIGNATURE_ANNOTATION} annotation")
    signature = b64(where, "the signature annotation", annotations[SIGNATURE_ANNOTATION])
    statement, problem = _read_simple_signing(payload)
    return Claim(where, "signature", payload, (signature,), statement, problem,
                 hint=rekor_key(annotations.get(REKOR_ANNOTATION)), keyless=CERTIFICATE_ANNOTATION in annotations)


def _read_simple_signing(payload: bytes) -> tuple[Statement | None, str | None]:
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None, "the signed payload is not JSON"
    critical = data.get("critical") if isinstance(data, dict) else None
    if not isinstance(critical, dict):
        return None, "the signed payload has no critical section"
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        return None, f"the signed payload's critical.type is {critical.get('type')!r}, not {SIMPLE_SIGNING_TYPE!r}"
    image = critical.get("image")
    named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(named, str):
        return None, "the signed payload names no critical.image.docker-manifest-digest"
    optional = data.get("optional")
    if optional is not None and not isinstance(optional, dict):
        return None, "the signed payload's optional section is not an object"
    return Statement("signature", {named: _strings(optional or {})}), None


def _strings(values: dict) -> dict[str, str]:
    """Annotation values as `-a key=value` compares them: strings as they are, anything else as JSON."""
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def envelope_claim(where: str, role: str, envelope: object, *, hint: str | None = None,
                   keyless: bool = False) -> Claim:
    """A DSSE envelope: the signatures cover PAE(payloadType, payload), the payload an in-toto statement."""
    if not isinstance(envelope, dict):
        raise EvidenceError(f"{where}: not a DSSE envelope (a JSON object)")
    payload_type, signatures = envelope.get("payloadType"), envelope.get("signatures")
    if not isinstance(payload_type, str):
        raise EvidenceError(f"{where}: the DSSE envelope has no payloadType")
    if not isinstance(signatures, list) or not signatures or not all(isinstance(s, dict) for s in signatures):
        raise EvidenceError(f"{where}: the DSSE envelope has no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise EvidenceError(f"{where}: the DSSE envelope has {len(signatures)} signatures, more than "
                            f"{MAX_SIGNATURES}: refused")
    body = b64(where, "the DSSE payload", envelope.get("payload"))
    sigs = tuple(b64(where, "a DSSE signature", s.get("sig")) for s in signatures)
    keyids = [s["keyid"] for s in signatures if isinstance(s.get("keyid"), str) and s["keyid"]]
    statement, problem = read_statement(payload_type, body)
    kind = statement.role if statement and statement.predicate_type else role
    return Claim(where, "attestation" if kind == "either" else kind, pae(payload_type, body), sigs, statement,
                 problem, hint or (keyids[0] if keyids else None), keyless)


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding, what a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def read_statement(payload_type: str, body: bytes) -> tuple[Statement | None, str | None]:
    """An in-toto statement: its predicate type and the sha256 digests of its subjects."""
    if payload_type != IN_TOTO:
        return None, f"the envelope's payloadType is {payload_type!r}, not {IN_TOTO}"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, "the signed statement is not JSON"
    if not isinstance(data, dict):
        return None, "the signed statement is not a JSON object"
    predicate = data.get("predicateType") if isinstance(data.get("predicateType"), str) else None
    role = "signature" if predicate == COSIGN_SIGN else "attestation"
    if data.get("_type") not in STATEMENT_TYPES:
        return Statement(role, {}, predicate), f"the signed statement's _type is {data.get('_type')!r}, not in-toto"
    if predicate is None:
        return Statement(role), "the signed statement has no predicateType"
    names = {}
    subjects = data.get("subject")
    for subject in subjects if isinstance(subjects, list) else []:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and isinstance(digests.get("sha256"), str):
            found = subject.get("annotations")
            names["sha256:" + digests["sha256"].lower()] = _strings(found if isinstance(found, dict) else {})
    if not names:
        return Statement(role, {}, predicate), "the signed statement has no subject with a sha256 digest"
    return Statement(role, names, predicate), None


def bundle_item(where: str, role: str, data: bytes) -> Item:
    """A Sigstore bundle (v0.3): key-based DSSE bundles are checked; keyless ones and message signatures are
    reported, not passed."""
    bundle = parse_json(where, "the sigstore bundle", data)
    if not isinstance(bundle, dict):
        raise EvidenceError(f"{where}: the sigstore bundle is not a JSON object")
    material = bundle.get("verificationMaterial")
    material = material if isinstance(material, dict) else {}
    if "certificate" in material or "x509CertificateChain" in material:
        return Refusal(where, role, f"{KEYLESS} (a sigstore bundle with a certificate)", keyless=True)
    if "dsseEnvelope" in bundle:
        key = material.get("publicKey")
        hint = key.get("hint") if isinstance(key, dict) and isinstance(key.get("hint"), str) else None
        return envelope_claim(where, role, bundle["dsseEnvelope"], hint=hint)
    if "messageSignature" in bundle:
        raise EvidenceError(f"{where}: a sigstore bundle with a messageSignature is not supported (cosign signs "
                            "images with DSSE bundles)")
    raise EvidenceError(f"{where}: the sigstore bundle has neither a dsseEnvelope nor a messageSignature")


def rekor_key(annotation: str | None) -> str | None:
    """The fingerprint of the key a cosign Rekor bundle annotation records. Not verified here (no Rekor key):
    only to say which key made a signature that does not verify."""
    if not annotation:
        return None
    try:
        body = json.loads(base64.b64decode(json.loads(annotation)["Payload"]["body"]))
        pem = base64.b64decode(body["spec"]["signature"]["publicKey"]["content"])
        return fingerprint_of(serialization.load_pem_public_key(pem))
    except (ValueError, KeyError, TypeError, UnsupportedAlgorithm, RecursionError):
        return None
