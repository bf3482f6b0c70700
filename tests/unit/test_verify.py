"""Offline verification of cosign signatures and attestations, with real keys and the formats as cosign
writes them: `.sig` simple-signing layers, `.att` DSSE envelopes, OCI 1.1 referrers, Sigstore v0.3 bundles.

The evidence is built here rather than with tests/rig/attach.py: the unit lane imports none of the rig's
services (attach.py imports the rig's registry client). The shapes are the same."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from dmi_provider.errors import DmiError
from dmi_provider.verify import (
    Evidence,
    EvidenceError,
    KeyRefused,
    PolicyError,
    VerifyPolicy,
    evidence_from,
    load_key,
    load_keys,
    verify,
)
from dmi_provider.verify.evidence import MAX_BLOB, read_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SLSA = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


IMAGE = sha256(b"the image manifest")
OTHER = sha256(b"another image manifest")


class Key:
    """A key pair of one kind, signing as cosign does with it (the hash of sigstore's algorithm registry)."""

    def __init__(self, kind: str = "p256") -> None:
        self.kind = kind
        curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p384-sha256": ec.SECP384R1(),
                  "p521": ec.SECP521R1()}
        if kind in curves:
            self.private = ec.generate_private_key(curves[kind])
        elif kind == "ed25519":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            self.private = rsa.generate_private_key(65537, int(kind.removeprefix("rsa")))

    def sign(self, data: bytes) -> bytes:
        k = self.private
        if isinstance(k, ec.EllipticCurvePrivateKey):
            algorithm = {"p384": hashes.SHA384(), "p521": hashes.SHA512()}.get(self.kind, hashes.SHA256())
            return k.sign(data, ec.ECDSA(algorithm))
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return k.sign(data)
        return k.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @property
    def pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return "SHA256:" + hashlib.sha256(der).hexdigest()

    @property
    def hint(self) -> str:
        """A sigstore bundle's publicKey.hint: base64 of the SHA-256 of the DER public key."""
        return base64.b64encode(bytes.fromhex(self.fingerprint.removeprefix("SHA256:"))).decode()

    def trusted(self, where: str = "keys/cosign.pub"):
        return load_key(where, self.pem)


class Store:
    """The target's blobs, as the caller's `blob(digest)` reads them."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.config = self.put(b'{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}')

    def put(self, data: bytes) -> dict:
        self.blobs[sha256(data)] = data
        return {"size": len(data), "digest": sha256(data)}

    def blob(self, digest: str) -> bytes:
        return self.blobs[digest]

    def manifest(self, layers: list[tuple[bytes, str, dict]], **extra) -> bytes:
        body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.config},
                "layers": [{"mediaType": media, **self.put(data)} | ({"annotations": a} if a else {})
                           for data, media, a in layers]} | extra
        return json.dumps(body, indent=2).encode()

    def evidence(self, sig: bytes | None = None, att: bytes | None = None, referrers: tuple = ()) -> Evidence:
        return evidence_from(sig, att, list(referrers), self.blob)


def payload(digest: str = IMAGE, optional: dict | None = None) -> bytes:
    """cosign's simple-signing payload, as `cosign sign` marshals it (Go's compact JSON)."""
    return json.dumps({"critical": {"identity": {"docker-reference": "registry.example/acme/app"},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"}, "optional": optional},
                      separators=(",", ":")).encode()


def sig_manifest(store: Store, key: Key, body: bytes | None = None, signed: bytes | None = None,
                 annotations: dict | None = None) -> bytes:
    """A `.sig` manifest: the layer is `body`, its signature annotation signs `signed` (the same, unless a test
    tampers)."""
    body = payload() if body is None else body
    signature = base64.b64encode(key.sign(body if signed is None else signed)).decode()
    return store.manifest([(body, SIMPLE_SIGNING, {"dev.cosignproject.cosign/signature": signature,
                                                   **(annotations or {})})])


def statement(digest: str = IMAGE, predicate: str = SLSA, annotations: dict | None = None) -> bytes:
    subject = {"name": "registry.example/acme/app", "digest": {"sha256": digest.split(":")[1]}}
    return json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate,
                       "subject": [subject | ({"annotations": annotations} if annotations else {})],
                       "predicate": {"builder": {"id": "dmi-test"}}}).encode()


def envelope(key: Key, body: bytes, signed: bytes | None = None, keyid: str = "") -> dict:
    """A DSSE envelope as cosign attest writes it: the signature over PAE(payloadType, body)."""
    covered = body if signed is None else signed
    pae = b"DSSEv1 %d %b %d %b" % (len(IN_TOTO), IN_TOTO.encode(), len(covered), covered)
    return {"payloadType": IN_TOTO, "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(key.sign(pae)).decode()}]}


def att_manifest(store: Store, *envelopes: tuple[dict, str]) -> bytes:
    """A `.att` manifest; the layer's predicateType annotation is unsigned (tests may make it lie)."""
    return store.manifest([(json.dumps(e).encode(), DSSE, {"predicateType": p}) for e, p in envelopes])


def referrer(store: Store, data: bytes, media: str, artifact_type: str, subject: str = IMAGE,
             annotations: dict | None = None) -> bytes:
    """An OCI 1.1 referrer; `annotations` are the manifest's (where cosign writes a bundle's predicate type)."""
    return store.manifest([(data, media, {})], artifactType=artifact_type,
                          subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1234},
                          **({"annotations": annotations} if annotations else {}))


def bundle(envelope_or_message: dict, material: dict) -> bytes:
    content = ({"dsseEnvelope": envelope_or_message} if "payloadType" in envelope_or_message
               else {"messageSignature": envelope_or_message})
    return json.dumps({"mediaType": BUNDLE, "verificationMaterial": material, **content}).encode()


def policy(mode: str, *keys: Key, **kwargs) -> VerifyPolicy:
    return VerifyPolicy(mode, load_keys((f"key{n}.pub", k.pem) for n, k in enumerate(keys, 1)), **kwargs)


def short(key: Key) -> str:
    return key.fingerprint[:19] + "…"


# --- signatures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["p256", "p384", "p384-sha256", "p521", "ed25519", "rsa2048"])
def test_a_good_signature_passes_with_the_fingerprint(kind):
    store, key = Store(), Key(kind)
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key)), policy("signature", key))
    assert verdict.ok, verdict.reason
    assert verdict.verified_by == key.fingerprint
    assert verdict.checked == 1
    assert verdict.reason == f"signature verified: cosign .sig by {short(key)}"


def test_an_ecdsa_signature_as_r_and_s_passes_too():
    """sigstore's verifier takes IEEE P1363 (r||s) as well as DER."""
    store, key = Store(), Key("p256")

    class Raw(Key):
        def sign(self, data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data))
            return r.to_bytes(32) + s.to_bytes(32)

    raw = Raw.__new__(Raw)
    raw.kind, raw.private = "p256", key.private
    assert verify(IMAGE, store.evidence(sig_manifest(store, raw)), policy("signature", key)).ok


def test_a_signature_by_another_key_fails():
    store, signer, trusted = Store(), Key(), Key()
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, signer)), policy("signature", trusted))
    assert not verdict.ok and verdict.verified_by is None
    assert verdict.reason == (f"no signature by any of verify-keys ({short(trusted)}) for {IMAGE}: 1 signature "
                              "found (cosign .sig), signed by another key, or changed after signing")


def test_a_signature_over_another_digest_fails():
    store, key = Store(), Key()
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key, payload(OTHER))), policy("signature", key))
    assert not verdict.ok
    assert verdict.reason == (f"no acceptable signature for {IMAGE}: 1 signature found (cosign .sig, by "
                              f"{short(key)}), the signature names {OTHER}, not {IMAGE}")


def test_a_payload_changed_after_signing_fails():
    store, key = Store(), Key()
    signed, changed = payload(OTHER), payload(IMAGE)
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key, changed, signed)), policy("signature", key))
    assert not verdict.ok
    assert verdict.reason.endswith("(cosign .sig), signed by another key, or changed after signing")


def rekor_annotation(key: Key, body: bytes) -> str:
    """cosign's `dev.sigstore.cosign/bundle` annotation: the Rekor entry records the signer's public key."""
    entry = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(body).hexdigest()}},
        "signature": {"content": "", "publicKey": {"content": base64.b64encode(key.pem).decode()}}}}
    return json.dumps({"SignedEntryTimestamp": "", "Payload": {
        "body": base64.b64encode(json.dumps(entry).encode()).decode(), "integratedTime": 1, "logIndex": 1,
        "logID": "00"}})


def test_a_tampered_payload_is_named_when_the_log_entry_names_a_trusted_key():
    store, key, stranger = Store(), Key(), Key()
    signed, changed = payload(OTHER), payload(IMAGE)
    tampered = sig_manifest(store, key, changed, signed, {"dev.sigstore.cosign/bundle": rekor_annotation(key, signed)})
    verdict = verify(IMAGE, store.evidence(tampered), policy("signature", key))
    assert not verdict.ok
    assert verdict.reason.endswith(f"(cosign .sig), payload tampered: signature does not match (it names "
                                   f"{short(key)}, one of verify-keys)")
    by_stranger = sig_manifest(store, stranger, annotations={"dev.sigstore.cosign/bundle":
                                                             rekor_annotation(stranger, payload())})
    verdict = verify(IMAGE, store.evidence(by_stranger), policy("signature", key))
    assert verdict.reason.endswith(f"(cosign .sig), signed by another key ({short(stranger)})")


def test_a_payload_of_another_type_fails_even_when_signed():
    store, key = Store(), Key()
    body = payload().replace(b"cosign container image signature", b"something else")
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key, body)), policy("signature", key))
    assert verdict.reason.endswith("signed, but the signed payload's critical.type is 'something else', not "
                                   "'cosign container image signature'")


def test_an_rsa_pss_signature_is_not_what_cosign_makes_with_a_key():
    store, key = Store(), Key("rsa2048")
    pss = Key.__new__(Key)
    pss.kind, pss.private = "pss", key.private
    pss.sign = lambda data: key.private.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert not verify(IMAGE, store.evidence(sig_manifest(store, pss)), policy("signature", key)).ok


def test_key_rotation_accepts_either_key():
    store, old, new, stranger = Store(), Key(), Key("ed25519"), Key()
    rotating = policy("signature", old, new)
    for signer in (old, new):
        verdict = verify(IMAGE, store.evidence(sig_manifest(store, signer)), rotating)
        assert verdict.ok and verdict.verified_by == signer.fingerprint
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, stranger)), rotating)
    assert f"verify-keys ({short(old)}, {short(new)})" in verdict.reason
    assert "an Ed25519ph signature (current cosign's default for ed25519 keys) cannot be checked yet" in verdict.reason


@pytest.mark.parametrize("optional, ok, reason", [
    ({"repo": "acme/app", "team": "web"}, True, None),
    ({"repo": "other"}, False, "annotation repo=acme/app missing from the signature (it has: repo=other)"),
    (None, False, "annotation repo=acme/app missing from the signature (it has: none)"),
])
def test_required_annotations(optional, ok, reason):
    store, key = Store(), Key()
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key, payload(optional=optional))),
                     policy("signature", key, annotations={"repo": "acme/app"}))
    assert verdict.ok is ok
    if reason:
        assert verdict.reason == (f"no acceptable signature for {IMAGE}: 1 signature found (cosign .sig, by "
                                  f"{short(key)}), {reason}")


def test_the_most_specific_failure_is_the_reason():
    """A stranger's signature, then the right key's signature over another digest: the second is named."""
    store, key, stranger = Store(), Key(), Key()
    envelope_ = envelope(key, statement(OTHER, COSIGN_SIGN))
    other = referrer(store, bundle(envelope_, {"publicKey": {"hint": key.hint}}), BUNDLE, BUNDLE)
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, stranger), referrers=(other,)),
                     policy("signature", key))
    assert not verdict.ok and verdict.checked == 2
    assert verdict.reason.startswith(f"no acceptable signature for {IMAGE}: 2 signatures found, none acceptable; "
                                     f"the closest (referrer {sha256(other)[:19]}…, by {short(key)}): ")
    assert verdict.reason.endswith(f"the signature names {OTHER}, not {IMAGE}")


def test_no_evidence_at_all():
    verdict = verify(IMAGE, Store().evidence(), policy("signature", Key()))
    assert verdict == type(verdict)(False, f"no signature for {IMAGE}: none found (no cosign .sig, no signature "
                                           "referrer)", None, 0)


def test_mode_none_verifies_nothing():
    assert verify(IMAGE, Store().evidence(), VerifyPolicy()).ok


# --- attestations ------------------------------------------------------------------------------------------


def test_signature_and_required_attestations_pass():
    store, key = Store(), Key("p384")
    att = att_manifest(store, (envelope(key, statement(predicate=SLSA)), SLSA),
                       (envelope(key, statement(predicate=SPDX)), SPDX))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att),
                     policy("attestations", key, attestations=("slsa", SPDX)))
    assert verdict.ok, verdict.reason
    assert verdict.verified_by == key.fingerprint and verdict.checked == 3
    assert verdict.reason.endswith(f"attestations verified: {SLSA}, {SPDX}")


def test_slsa_accepts_provenance_v0_2_and_no_list_means_any_attestation():
    store, key = Store(), Key()
    v02 = "https://slsa.dev/provenance/v0.2"
    att = att_manifest(store, (envelope(key, statement(predicate=v02)), v02))
    evidence = store.evidence(sig_manifest(store, key), att)
    assert verify(IMAGE, evidence, policy("attestations", key, attestations=("slsa",))).ok
    assert verify(IMAGE, evidence, policy("attestations", key)).ok
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key)), policy("attestations", key))
    assert verdict.reason == f"no attestation for {IMAGE}: none found (no cosign .att, no attestation referrer)"


def test_a_missing_attestation_fails():
    store, key = Store(), Key()
    att = att_manifest(store, (envelope(key, statement(predicate=SPDX)), SPDX))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att),
                     policy("attestations", key, attestations=("slsa",)))
    assert not verdict.ok
    assert verdict.reason == f"attestation {SLSA} missing (found: {SPDX})"


def test_the_signed_predicate_type_counts_not_the_layer_annotation():
    store, key = Store(), Key()
    att = att_manifest(store, (envelope(key, statement(predicate=SPDX)), SLSA))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att),
                     policy("attestations", key, attestations=("slsa",)))
    assert verdict.reason == f"attestation {SLSA} missing (found: {SPDX})"


def test_an_attestation_by_an_unknown_key_fails():
    store, key, stranger = Store(), Key(), Key()
    att = att_manifest(store, (envelope(stranger, statement()), SLSA))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att),
                     policy("attestations", key, attestations=("slsa",)))
    assert verdict.reason == (f"attestation {SLSA} missing (found: none); 1 of that type not accepted (cosign .att): "
                              "signed by another key, or changed after signing")
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att), policy("attestations", key))
    assert verdict.reason == (f"no attestation by any of verify-keys ({short(key)}) for {IMAGE}: 1 attestation "
                              "found (cosign .att), signed by another key, or changed after signing")


def test_an_attestation_about_another_digest_fails():
    store, key = Store(), Key()
    att = att_manifest(store, (envelope(key, statement(OTHER)), SLSA))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att),
                     policy("attestations", key, attestations=("slsa",)))
    assert verdict.reason == (f"attestation {SLSA} missing (found: none); 1 of that type not accepted (cosign .att, "
                              f"by {short(key)}): the attestation names {OTHER}, not {IMAGE}")


def test_attestations_need_a_signature_first():
    store, key = Store(), Key()
    att = att_manifest(store, (envelope(key, statement()), SLSA))
    verdict = verify(IMAGE, store.evidence(None, att), policy("attestations", key))
    assert not verdict.ok and verdict.reason.startswith(f"no signature for {IMAGE}")


def test_a_tampered_envelope_fails():
    store, key = Store(), Key()
    att = att_manifest(store, (envelope(key, statement(), signed=statement(OTHER)), SLSA))
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), att), policy("attestations", key))
    assert verdict.reason.endswith("(cosign .att), signed by another key, or changed after signing")


# --- OCI 1.1 referrers and Sigstore bundles ----------------------------------------------------------------


def test_a_dsse_referrer_is_an_attestation():
    store, key = Store(), Key("rsa2048")
    for artifact_type in (DSSE, IN_TOTO):
        dsse = referrer(store, json.dumps(envelope(key, statement())).encode(), DSSE, artifact_type)
        verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), referrers=(dsse,)),
                         policy("attestations", key, attestations=("slsa",)))
        assert verdict.ok, verdict.reason


def test_a_referrer_about_another_subject_is_refused():
    store, key = Store(), Key()
    dsse = referrer(store, json.dumps(envelope(key, statement())).encode(), DSSE, DSSE, subject=OTHER)
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), referrers=(dsse,)), policy("attestations", key))
    assert not verdict.ok
    assert verdict.reason.endswith(f"the referrer's subject is {OTHER}, not {IMAGE}")


def test_a_new_bundle_format_signature_passes_with_its_annotations():
    """`cosign sign --new-bundle-format`: a DSSE bundle of a cosign/sign/v1 statement; `-a` annotations
    are the subject's."""
    store, key = Store(), Key()
    signed = envelope(key, statement(predicate=COSIGN_SIGN, annotations={"repo": "acme/app"}))
    ref = referrer(store, bundle(signed, {"publicKey": {"hint": key.hint}}), BUNDLE, BUNDLE,
                   annotations={"dev.sigstore.bundle.predicateType": COSIGN_SIGN})
    verdict = verify(IMAGE, store.evidence(referrers=(ref,)),
                     policy("signature", key, annotations={"repo": "acme/app"}))
    assert verdict.ok, verdict.reason
    assert verdict.verified_by == key.fingerprint
    verdict = verify(IMAGE, store.evidence(referrers=(ref,)), policy("signature", key, annotations={"repo": "x"}))
    assert verdict.reason.endswith("annotation repo=x missing from the signature (it has: repo=acme/app)")


def test_a_new_bundle_format_attestation_passes():
    """`cosign attest --new-bundle-format`: a DSSE bundle of the attestation's statement."""
    store, key = Store(), Key("p521")
    sign = envelope(key, statement(predicate=COSIGN_SIGN))
    attest = envelope(key, statement(predicate=SLSA))
    refs = tuple(referrer(store, bundle(e, {"publicKey": {"hint": key.hint}}), BUNDLE, BUNDLE,
                          annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                                       "dev.sigstore.bundle.predicateType": p})
                 for e, p in ((sign, COSIGN_SIGN), (attest, SLSA)))
    verdict = verify(IMAGE, store.evidence(referrers=refs), policy("attestations", key, attestations=("slsa",)))
    assert verdict.ok, verdict.reason
    assert verdict.checked == 2
    verdict = verify(IMAGE, store.evidence(referrers=refs[1:]), policy("attestations", key))
    assert verdict.reason == f"no signature for {IMAGE}: none found (no cosign .sig, no signature referrer)"


def test_a_bundle_whose_hint_names_a_trusted_key_but_does_not_verify_is_tampered():
    store, key = Store(), Key()
    signed = envelope(key, statement(predicate=COSIGN_SIGN), signed=statement(OTHER, COSIGN_SIGN))
    ref = referrer(store, bundle(signed, {"publicKey": {"hint": key.hint}}), BUNDLE, BUNDLE)
    verdict = verify(IMAGE, store.evidence(referrers=(ref,)), policy("signature", key))
    assert verdict.reason.endswith(f"payload tampered: signature does not match (it names {short(key)}, one of "
                                   "verify-keys)")


def test_a_keyless_bundle_is_reported_not_accepted():
    store, key = Store(), Key()
    signed = envelope(Key(), statement(predicate=COSIGN_SIGN))
    ref = referrer(store, bundle(signed, {"certificate": {"rawBytes": "MIIB"}}), BUNDLE,
                   "application/vnd.dev.sigstore.bundle+json;version=0.3",
                   annotations={"dev.sigstore.bundle.predicateType": COSIGN_SIGN})
    verdict = verify(IMAGE, store.evidence(referrers=(ref,)), policy("signature", key))
    assert not verdict.ok
    assert verdict.reason.startswith(f"no signature by any of verify-keys ({short(key)}) for {IMAGE}: 1 signature "
                                     "found (referrer ")
    assert verdict.reason.endswith("keyless signature present but not supported yet (a sigstore bundle with a "
                                   "certificate)")


def test_a_keyless_legacy_signature_is_reported_not_accepted():
    store, key, ephemeral = Store(), Key(), Key()
    sig = sig_manifest(store, ephemeral, annotations={"dev.sigstore.cosign/certificate": "-----BEGIN CERT…"})
    verdict = verify(IMAGE, store.evidence(sig), policy("signature", key))
    assert verdict.reason.endswith("(cosign .sig), keyless signature present but not supported yet (a "
                                   "certificate, not a key)")


def test_a_message_signature_bundle_is_not_supported():
    store, key = Store(), Key()
    message = {"messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(b"0" * 32).decode()},
               "signature": base64.b64encode(key.sign(b"x")).decode()}
    ref = referrer(store, bundle(message, {"publicKey": {"hint": key.hint}}), BUNDLE, BUNDLE)
    verdict = verify(IMAGE, store.evidence(referrers=(ref,)), policy("signature", key))
    assert verdict.reason.endswith("a sigstore bundle with a messageSignature is not supported (cosign signs images "
                                   "with DSSE bundles)")


def test_other_referrers_are_ignored():
    store, key = Store(), Key()
    sbom = referrer(store, b'{"spdxVersion":"SPDX-2.3"}', "application/spdx+json", "application/spdx+json")
    verdict = verify(IMAGE, store.evidence(sig_manifest(store, key), referrers=(sbom,)), policy("signature", key))
    assert verdict.ok and verdict.checked == 1


# --- what is read ------------------------------------------------------------------------------------------


def test_a_blob_not_matching_its_digest_is_refused():
    store, key = Store(), Key()
    sig = sig_manifest(store, key)
    (layer,) = json.loads(sig)["layers"]
    store.blobs[layer["digest"]] = payload(OTHER)
    verdict = verify(IMAGE, store.evidence(sig), policy("signature", key))
    assert not verdict.ok
    assert verdict.reason.endswith(f"(cosign .sig), the bytes read for {layer['digest']} hash to "
                                   f"{sha256(payload(OTHER))}: refused")


def test_an_oversized_blob_is_refused_before_it_is_read():
    store, key = Store(), Key()
    big = secrets.token_bytes(MAX_BLOB + 1)
    att = store.manifest([(big, DSSE, {"predicateType": SLSA})])
    del store.blobs[sha256(big)]  # never read: the declared size refuses it
    verdict = verify(IMAGE, evidence_from(sig_manifest(store, key), att, [], store.blob),
                     policy("attestations", key, attestations=("slsa",)))
    assert verdict.reason == (f"attestation {SLSA} missing (found: none); 1 of that type not accepted (cosign .att): "
                              f"the layer {sha256(big)[:19]}… is 1048577 bytes, more than 1 MiB: refused")
    with pytest.raises(EvidenceError, match=r"is 1048577 bytes, more than 1 MiB: refused"):
        read_blob("cosign .att", {"digest": sha256(big), "size": len(big)}, store.blob)
    lying = {"digest": sha256(big), "size": 10}
    with pytest.raises(EvidenceError, match=r"read 1048577 bytes, more than 1 MiB: refused"):
        read_blob("cosign .att", lying, lambda _digest: big)


def test_an_oversized_layer_is_reported_as_the_reason():
    store, key = Store(), Key()
    sig = store.manifest([(secrets.token_bytes(MAX_BLOB + 1), SIMPLE_SIGNING, {})])
    verdict = verify(IMAGE, store.evidence(sig), policy("signature", key))
    assert verdict.reason.endswith("bytes, more than 1 MiB: refused") and not verdict.ok


def test_more_than_50_layers_are_refused():
    store, key = Store(), Key()
    layer = (payload(), SIMPLE_SIGNING, {"dev.cosignproject.cosign/signature":
                                         base64.b64encode(key.sign(payload())).decode()})
    verdict = verify(IMAGE, store.evidence(store.manifest([layer] * 51)), policy("signature", key))
    assert verdict.reason.endswith("(cosign .sig), 51 signature layers, more than 50: refused")


@pytest.mark.parametrize("manifest, error", [
    (b"not json", "the manifest is not JSON"),
    (b'{"manifests": []}', "not an image manifest (no layers list)"),
    (b'{"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar"}]}', "no layer of a signature type "
     "(application/vnd.dev.cosign.simplesigning.v1+json, application/vnd.dsse.envelope.v1+json or a sigstore bundle)"),
])
def test_a_malformed_manifest_is_refused(manifest, error):
    verdict = verify(IMAGE, Store().evidence(manifest), policy("signature", Key()))
    assert verdict.reason.endswith(f"(cosign .sig), {error}")


def test_the_digest_to_verify_must_be_sha256():
    with pytest.raises(EvidenceError, match="is not a sha256 digest"):
        verify("sha512:abc", Store().evidence(), policy("signature", Key()))


# --- keys --------------------------------------------------------------------------------------------------


def test_a_key_has_its_fingerprint_and_where():
    key = Key()
    trusted = load_key("connection dmi_verify_key", key.pem.decode())
    assert (trusted.where, trusted.fingerprint) == ("connection dmi_verify_key", key.fingerprint)
    assert load_keys([("a", key.pem), ("b", key.pem)]) == (load_key("a", key.pem),)


def private_pems() -> list[bytes]:
    k = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    encrypted = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"secret"))
    sec1 = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    cosign = [f"-----BEGIN ENCRYPTED {kind} PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED {kind} PRIVATE "
              "KEY-----\n".encode() for kind in ("SIGSTORE", "COSIGN")]
    return [pkcs8, encrypted, sec1, *cosign, Key().pem + pkcs8]


@pytest.mark.parametrize("pem", private_pems())
def test_a_private_key_is_refused(pem):
    with pytest.raises(KeyRefused) as exc:
        load_key("keys/cosign.key", pem)
    assert str(exc.value) == ("keys/cosign.key: this is a private key; give the public key (cosign.pub), never the "
                              "private one")
    assert isinstance(exc.value, DmiError) and not exc.value.retryable


def test_a_certificate_is_refused():
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(k, hashes.SHA256()))
    with pytest.raises(KeyRefused) as exc:
        load_key("keys/signer.crt", cert.public_bytes(serialization.Encoding.PEM))
    assert str(exc.value) == ("keys/signer.crt: this is a certificate; keyless (certificate) verification is not "
                              "supported yet: give the signer's public key (cosign.pub)")


def unsupported(kind: str) -> bytes:
    public = {"k1": lambda: ec.generate_private_key(ec.SECP256K1()).public_key(),
              "rsa1024": lambda: rsa.generate_private_key(65537, 1024).public_key(),
              "ed448": lambda: ed448.Ed448PrivateKey.generate().public_key()}[kind]()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("pem, error", [
    (b"hello", "not a PEM public key: no -----BEGIN PUBLIC KEY----- block"),
    (b"", "not a PEM public key: no -----BEGIN PUBLIC KEY----- block"),
    (b"ssh-ed25519 AAAAC3Nza me@host", "not a PEM public key: no -----BEGIN PUBLIC KEY----- block (an SSH key? give "
     "a PEM public key)"),
    (b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n", "the PUBLIC KEY block does not parse"),
    (b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
     "a PEM 'EC PARAMETERS' block, not a PUBLIC KEY"),
    ("k1", "ECDSA curve secp256k1 is not supported (ECDSA P-256, P-384 or P-521, Ed25519, or RSA of 2048 bits or "
     "more)"),
    ("rsa1024", "an RSA key of 1024 bits is too short (2048 at least)"),
    ("ed448", "Ed448 keys are not supported"),
    ("two", "holds 2 PEM blocks; give one public key per entry"),
])
def test_garbage_and_unsupported_keys_are_refused(pem, error):
    if pem == "two":
        pem = Key().pem + Key().pem
    elif isinstance(pem, str):
        pem = unsupported(pem)
    with pytest.raises(KeyRefused) as exc:
        load_key("keys/cosign.pub", pem)
    assert str(exc.value).startswith(f"keys/cosign.pub: {error}")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs, error", [
    ({"mode": "always"}, "verify mode 'always': expected none, signature or attestations"),
    ({"mode": "signature"}, "verify = signature needs at least one trusted public key (verify-keys)"),
    ({"mode": "attestations", "attestations": ("provenance",)}, "attestation 'provenance': neither a short name "
     "(slsa, spdx, cyclonedx, vuln) nor a predicate type URI"),
    ({"mode": "signature", "attestations": ("slsa",)}, "required attestations (slsa) are checked only with verify = "
     "attestations, not signature"),
])
def test_a_policy_that_cannot_apply_is_refused(kwargs, error):
    keys = () if kwargs == {"mode": "signature"} else (Key().trusted(),)
    with pytest.raises(PolicyError) as exc:
        VerifyPolicy(keys=keys, **kwargs)
    assert str(exc.value) == error


# --- a second, independent verifier ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa2048"])
def test_securesystemslib_agrees_on_what_is_accepted(kind):
    """securesystemslib's DSSE `Envelope` and `SSlibKey` check our accepted envelope and raw signature, and
    reject the tampered envelope we reject. (It matches signatures to keys by keyid, which DSSE does not
    sign: the envelope's keyid is set to the key's before it checks.)"""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import Signature, SSlibKey

    key, store = Key(kind), Store()
    schemes = {"rsa2048": "rsa-pkcs1v15-sha256"}
    sslib = SSlibKey.from_crypto(key.private.public_key(), scheme=schemes.get(kind))
    good, tampered = envelope(key, statement()), envelope(key, statement(), signed=statement(OTHER))
    for env, accepted in ((good, True), (tampered, False)):
        ours = verify(IMAGE, store.evidence(sig_manifest(store, key), att_manifest(store, (env, SLSA))),
                      policy("attestations", key)).ok
        theirs = json.loads(json.dumps(env))
        theirs["signatures"][0]["keyid"] = sslib.keyid
        try:
            Envelope.from_dict(theirs).verify([sslib], 1)
            agreed = True
        except VerificationError:
            agreed = False
        assert ours is agreed is accepted
    sig = sig_manifest(store, key)
    assert verify(IMAGE, store.evidence(sig), policy("signature", key)).ok
    (layer,) = json.loads(sig)["layers"]
    raw = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    sslib.verify_signature(Signature(sslib.keyid, raw.hex()), store.blob(layer["digest"]))


def test_the_package_imports_no_airflow_and_no_network():
    import ast
    from pathlib import Path

    import dmi_provider.verify as package

    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("airflow", "httpx", "socket", "sqlalchemy", "urllib") for n in names)
