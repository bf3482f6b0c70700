"""Offline verification of cosign key-based signatures and in-toto attestations of a mirrored image.
Plain Python: no Airflow import, no network, no database; all crypto is `cryptography`'s.

Use::

    keys = load_keys([("keys/cosign.pub", pem), ("connection dmi_verify_key", other_pem)])
    policy = VerifyPolicy("attestations", keys, attestations=("slsa",), annotations={"repo": "acme/app"})
    evidence = evidence_from(sig_manifest, att_manifest, referrer_manifests, blob)
    verdict = verify(digest, evidence, policy)   # Verdict(ok, reason, verified_by, checked)

`digest` is the digest mirrored under the tag: for a multi-arch index, the index's own digest (cosign signs
what `cosign sign image:tag` resolves to); which digest to pass is the caller's choice. The caller hands in
the manifests' raw bytes (the `sha256-<hex>.sig` and `.att` tags' manifests, None when absent, and the OCI
1.1 referrer manifests of the digest) and `blob(digest) -> bytes`, which reads a blob already copied to the
target; every blob is capped at 1 MiB (50 signature layers a manifest) and hashed again here before use.

What is verified, against any of the keys (a signature by one of them counts, so keys rotate):

- cosign's `.sig` simple-signing payloads (the signature annotation over the payload blob's exact bytes),
  whose `critical.image.docker-manifest-digest` must be the digest and `critical.type` cosign's;
- DSSE envelopes (`.att` layers, DSSE referrers, and key-based Sigstore v0.3 bundles, as `cosign sign
  --new-bundle-format` and `cosign attest --new-bundle-format` push them): the signature over the PAE, the
  in-toto statement's sha256 subject must be the digest, its signed `predicateType` is what counts; a
  statement of type https://sigstore.dev/cosign/sign/v1 is a signature, any other an attestation.

Keys: ECDSA P-256/P-384/P-521 (DER or r||s signatures), Ed25519 (pure), RSA of 2048 bits or more with
PKCS#1 v1.5 and SHA-256. Not verified, reported instead: keyless signatures (a certificate: Fulcio and Rekor
are out of reach offline), bundles with a `messageSignature` (cosign makes them for blobs, not images),
Ed25519ph signatures (what current cosign makes with ed25519 keys; `cryptography` cannot check them).
Transparency-log entries are not checked: trust rests on the keys alone, as `cosign verify --key
--insecure-ignore-tlog` does.

Annotations (`cosign sign -a key=value`) are required of signatures only: attestations carry none of their own.
The payload's `docker-reference` is not compared: it names the source repository, not the mirror's.

Errors: `load_key` raises `KeyRefused`, `VerifyPolicy` `PolicyError` (both `DmiError`, not retryable). `verify`
never raises over evidence: what is oversized, mismatched or malformed is skipped, and named in the reason
when nothing passes. It raises `EvidenceError` for a digest argument that is not sha256; what `blob` raises
propagates (a retryable read error stays retryable).
"""

from __future__ import annotations

from dmi_provider.verify.check import PREDICATES, PolicyError, Verdict, VerifyPolicy, predicate_types, verify
from dmi_provider.verify.evidence import Blob, Evidence, EvidenceError, evidence_from
from dmi_provider.verify.keys import KeyRefused, TrustedKey, load_key, load_keys

__all__ = ["PREDICATES", "Blob", "Evidence", "EvidenceError", "KeyRefused", "PolicyError", "TrustedKey",
           "Verdict", "VerifyPolicy", "evidence_from", "load_key", "load_keys", "predicate_types", "verify"]
