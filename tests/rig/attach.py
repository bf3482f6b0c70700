"""Signatures, attestations and SBOMs laid out as cosign and OCI 1.1 clients lay them out, made offline:
a cosign simple-signing payload signed with an ECDSA key the test makes (`.sig` tag), an in-toto
statement in a DSSE envelope (`.att` tag), an SPDX SBOM as an OCI 1.1 referrer (`subject`, `artifactType`)
listed in the `sha256-<hex>` fallback index, and BuildKit attestation manifests inside an index."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.rig.client import RigClient
from tests.rig.images import Blob, Image, Index

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = Blob(b"{}")
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SPDX = "application/spdx+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


def tag_of(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + suffix


@dataclass(frozen=True)
class Artifact:
    manifest: bytes
    media_type: str
    blobs: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        from tests.rig.images import sha256

        return sha256(self.manifest)


class Signer:
    """An ECDSA P-256 key, as `cosign generate-key-pair` makes."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()

    def verifies(self, data: bytes, signature: str) -> bool:
        try:
            self.key.public_key().verify(base64.b64decode(signature), data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _manifest(config: Blob, config_type: str, layers: list[tuple[Blob, str, dict]], *, subject: dict | None = None,
              artifact_type: str | None = None) -> Artifact:
    body: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": {"mediaType": config_type, "size": config.size, "digest": config.digest},
                  "layers": [{"mediaType": t, "size": b.size, "digest": b.digest} | ({"annotations": a} if a else {})
                             for b, t, a in layers]}
    if artifact_type:
        body["artifactType"] = artifact_type
    if subject:
        body["subject"] = subject
    return Artifact(json.dumps(body, indent=2).encode(), OCI_MANIFEST, (config, *(b for b, _t, _a in layers)))


def signature(signer: Signer, reference: str, digest: str) -> Artifact:
    """cosign's legacy signature: a simple-signing payload naming the digest, signed, in a `.sig` manifest."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    config = Blob(json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    return _manifest(config, "application/vnd.oci.image.config.v1+json",
                     [(Blob(payload), SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: signer.sign(payload)})])


def attestation(signer: Signer, digest: str, predicate: str = "https://slsa.dev/provenance/v1") -> Artifact:
    """An in-toto statement about the digest in a signed DSSE envelope, as in a `.att` manifest."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate,
                            "subject": [{"name": "image", "digest": {"sha256": digest.split(":")[1]}}],
                            "predicate": {"builder": {"id": "dmi-test"}}}).encode()
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(statement), statement)
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement).decode(),
                           "signatures": [{"sig": signer.sign(pae)}]}).encode()
    config = Blob(json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    return _manifest(config, "application/vnd.oci.image.config.v1+json",
                     [(Blob(envelope), DSSE, {"predicateType": predicate})])


def sbom(subject_type: str, subject_digest: str, subject_size: int, name: str = "dmi-test") -> Artifact:
    """An SPDX document as an OCI 1.1 referrer of the subject."""
    document = json.dumps({"spdxVersion": "SPDX-2.3", "name": name, "packages": []}).encode()
    return _manifest(EMPTY, "application/vnd.oci.empty.v1+json", [(Blob(document), SPDX, {})], artifact_type=SPDX,
                     subject={"mediaType": subject_type, "digest": subject_digest, "size": subject_size})


def referrers_index(referrers: list[Artifact]) -> bytes:
    """The fallback tag's index, as a client without the referrers API keeps it."""
    entries = []
    for r in referrers:
        data = json.loads(r.manifest)
        entry = {"mediaType": r.media_type, "digest": r.digest, "size": len(r.manifest)}
        if data.get("artifactType"):
            entry["artifactType"] = data["artifactType"]
        entries.append(entry)
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, indent=2).encode()


def buildkit_index(index: Index, signer: Signer) -> tuple[bytes, list[Artifact]]:
    """The index with a BuildKit attestation manifest for each image (platform unknown/unknown)."""
    data = json.loads(index.manifest)
    data["mediaType"] = OCI_INDEX
    extra = []
    for child in index.children:
        att = attestation(signer, child.digest, "https://spdx.dev/Document")
        extra.append(att)
        data["manifests"].append({
            "mediaType": att.media_type, "digest": att.digest, "size": len(att.manifest),
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": child.digest}})
    return json.dumps(data, indent=2).encode(), extra


def put(client: RigClient, repo: str, ref: str, artifact: Artifact) -> str:
    for blob in artifact.blobs:
        client.put_blob(repo, blob.data)
    client.put_manifest(repo, ref, artifact.manifest, artifact.media_type)
    return artifact.digest


def push_buildkit(client: RigClient, repo: str, tag: str, index: Index, signer: Signer) -> tuple[str, bytes]:
    """A multi-arch image with in-index attestations, as `docker buildx build --attest` pushes it."""
    body, attestations = buildkit_index(index, signer)
    for blob in index.blobs:
        client.put_blob(repo, blob.data)
    for child in index.children:
        client.put_manifest(repo, child.digest, child.manifest, child.media_type)
    for att in attestations:
        put(client, repo, att.digest, att)
    client.put_manifest(repo, tag, body, OCI_INDEX)
    from tests.rig.images import sha256

    return sha256(body), body


__all__ = ["Artifact", "Image", "Signer", "attestation", "buildkit_index", "put", "referrers_index", "sbom",
           "signature", "tag_of"]
