"""Verify before publish (issue 27): the target tag is written only for an image whose cosign signature (and
attestations) verify, as the target holds them after the copy; real docker-registry processes, signatures made
with real keys in the formats cosign writes (tests/rig/attach.py)."""

from __future__ import annotations

import itertools
import re

import pytest
from cryptography.hazmat.primitives import serialization

from dmi_provider.registry.client import HostSettings
from dmi_provider.registry.copy import ClientPool, Copier
from dmi_provider.registry.gate import Gate, RejectedImage
from dmi_provider.registry.pool import plain_http
from dmi_provider.registry.reference import parse_reference
from dmi_provider.registry.referrers import ReferrerFilter
from dmi_provider.verify import VerifyPolicy, load_key
from tests.rig.attach import Signer, attestation, put, signature, tag_of
from tests.rig.fixtures import rig_client
from tests.rig.images import push

_ns = itertools.count(1)


def pem(signer: Signer) -> bytes:
    return signer.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)


def gate(*signers: Signer, mode: str = "signature", quarantine: str | None = None, **policy) -> Gate:
    keys = tuple(load_key(f"key{i}.pub", pem(s)) for i, s in enumerate(signers))
    return Gate(VerifyPolicy(mode, keys, **policy), quarantine)


def copier(registry, the_gate: Gate, said: list[str] | None = None) -> Copier:
    settings = HostSettings()
    return Copier(ClientPool(plain_http([registry.host], {}, settings), default=settings, use_docker_config=False),
                  referrers=ReferrerFilter(), progress=(said.append if said is not None else lambda _: None),
                  gate=the_gate)


def signed(client, repo: str, artifact, signer: Signer | None, *, digest: str | None = None,
           attest: str | None = None) -> None:
    """The image under tag 1, a cosign signature of `digest` (default: the image's) by `signer`."""
    push(client, repo, "1", artifact)
    if signer is not None:
        put(client, repo, tag_of(artifact.digest, ".sig"),
            signature(signer, f"registry.example/{repo}", digest or artifact.digest))
    if attest and signer is not None:
        put(client, repo, tag_of(artifact.digest, ".att"), attestation(signer, artifact.digest, attest))


def refs(registry, src: str, dst: str):  # type: ignore[no-untyped-def]
    return parse_reference(f"{registry.host}/{src}:1"), parse_reference(f"{registry.host}/{dst}:1")


def test_a_signed_image_is_tagged_and_says_which_key(open_registry, factory):
    ns, signer, other = f"v{next(_ns)}", Signer(), Signer()
    client, artifact = rig_client(open_registry), factory.image()
    signed(client, f"{ns}/src", artifact, signer)
    said: list[str] = []
    result = copier(open_registry, gate(other, signer), said).copy(*refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    assert result.target_digest == artifact.digest
    assert result.verified_by == load_key("k", pem(signer)).fingerprint  # rotation: the second key signed it
    assert client.get_manifest(f"{ns}/dst", "1").content == artifact.manifest
    assert any("verified" in line and "tagged" in line for line in said)


@pytest.mark.parametrize("case", ["wrong key", "another digest", "unsigned", "tampered"])
def test_an_image_that_does_not_verify_never_gets_the_tag(open_registry, factory, case):
    ns, trusted = f"v{next(_ns)}", Signer()
    client, artifact, elsewhere = rig_client(open_registry), factory.image(), factory.image()
    key = trusted if case != "wrong key" else Signer()
    if case == "another digest":
        signed(client, f"{ns}/src", artifact, trusted, digest=elsewhere.digest)
    elif case == "unsigned":
        signed(client, f"{ns}/src", artifact, None)
    else:
        signed(client, f"{ns}/src", artifact, trusted)
    if case == "tampered":  # the payload edited after signing: a new blob and manifest under the .sig tag
        sig = signature(trusted, f"registry.example/{ns}/src", artifact.digest)
        from tests.rig.attach import SIGNATURE_ANNOTATION, Artifact, _manifest
        from tests.rig.images import Blob

        payload = sig.blobs[1].data.replace(b"registry.example", b"registry.evilxmpl")
        good = next(iter(__import__("json").loads(sig.manifest)["layers"]))["annotations"][SIGNATURE_ANNOTATION]
        bad: Artifact = _manifest(sig.blobs[0], "application/vnd.oci.image.config.v1+json",
                                  [(Blob(payload), "application/vnd.dev.cosign.simplesigning.v1+json",
                                    {SIGNATURE_ANNOTATION: good})])
        put(client, f"{ns}/src", tag_of(artifact.digest, ".sig"), bad)
    with pytest.raises(RejectedImage) as exc:
        copier(open_registry, gate(key if case != "tampered" else trusted)).copy(
            *refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    assert exc.value.outcome == "rejected" and not exc.value.retryable
    if case == "unsigned":  # the whole line, as the history row and the task log show it
        assert str(exc.value) == (f"no signature for {artifact.digest}: none found (no cosign .sig, no signature "
                                  "referrer): not published (the target tag is left as it was)")
    expected = {"wrong key": "signed by another key", "another digest": f"names {elsewhere.digest}",
                "unsigned": "no signature", "tampered": "changed after signing"}[case]
    assert expected in str(exc.value) and "not published" in str(exc.value)
    assert client.get_manifest(f"{ns}/dst", "1").status_code == 404  # no tag
    assert client.get_manifest(f"{ns}/dst", artifact.digest).status_code == 404  # withdrawn: not by digest either


def test_an_earlier_good_digest_under_the_tag_stays_when_the_new_one_is_rejected(open_registry, factory):
    ns, signer = f"v{next(_ns)}", Signer()
    client, good, moved = rig_client(open_registry), factory.image(), factory.image()
    signed(client, f"{ns}/src", good, signer)
    copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    push(client, f"{ns}/src", "1", moved)  # the tag moved at the source, to an image nobody signed
    with pytest.raises(RejectedImage, match="no signature"):
        copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    assert client.get_manifest(f"{ns}/dst", "1").content == good.manifest
    # The key rotated away, a forced re-copy of the digest the tag holds: rejected, and the tag stays (what the
    # target held before the copy is never withdrawn).
    push(client, f"{ns}/src", "1", good)
    with pytest.raises(RejectedImage, match="signed by another key"):
        copier(open_registry, gate(Signer())).copy(*refs(open_registry, f"{ns}/src", f"{ns}/dst"), force=True)
    assert client.get_manifest(f"{ns}/dst", "1").content == good.manifest


def test_a_rejected_image_is_tagged_in_the_quarantine_repository(open_registry, factory):
    ns, trusted = f"v{next(_ns)}", Signer()
    client, artifact = rig_client(open_registry), factory.image()
    signed(client, f"{ns}/src", artifact, Signer())  # signed, by a key nobody trusts
    with pytest.raises(RejectedImage) as exc:
        copier(open_registry, gate(trusted, quarantine=f"quarantine/{ns}/dst")).copy(
            *refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    assert exc.value.outcome == "quarantined"
    assert exc.value.quarantined_at == f"{open_registry.host}/quarantine/{ns}/dst:1"
    assert client.get_manifest(f"{ns}/dst", "1").status_code == 404
    assert client.get_manifest(f"{ns}/dst", artifact.digest).status_code == 404
    assert client.get_manifest(f"quarantine/{ns}/dst", "1").content == artifact.manifest
    for blob in artifact.blobs:
        assert client.get_blob(f"quarantine/{ns}/dst", blob.digest) == blob.data


def test_attestations_must_be_there_and_signed(open_registry, factory):
    ns, signer = f"v{next(_ns)}", Signer()
    client, artifact = rig_client(open_registry), factory.image()
    signed(client, f"{ns}/src", artifact, signer, attest="https://spdx.dev/Document")
    with pytest.raises(RejectedImage, match=re.escape("attestation https://slsa.dev/provenance/v1 missing")):
        copier(open_registry, gate(signer, mode="attestations", attestations=("slsa",))).copy(
            *refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    result = copier(open_registry, gate(signer, mode="attestations", attestations=("spdx",))).copy(
        *refs(open_registry, f"{ns}/src", f"{ns}/dst"))
    assert result.target_digest == artifact.digest
    # Signed by the trusted key, attested by another: the attestation does not count.
    put(client, f"{ns}/src", tag_of(artifact.digest, ".att"), attestation(Signer(), artifact.digest,
                                                                           "https://slsa.dev/provenance/v1"))
    with pytest.raises(RejectedImage) as exc:
        copier(open_registry, gate(signer, mode="attestations", attestations=("slsa",))).copy(
            *refs(open_registry, f"{ns}/src", f"{ns}/other"))
    assert str(exc.value) == ("attestation https://slsa.dev/provenance/v1 missing (found: none); 1 of that type not "
                              "accepted (cosign .att): signed by another key, or changed after signing: not "
                              "published (the target tag is left as it was)")


def test_a_multi_arch_image_verifies_the_index_and_a_filtered_one_each_platform(open_registry, factory):
    ns, signer = f"v{next(_ns)}", Signer()
    client, index = rig_client(open_registry), factory.multiarch(("linux/amd64", "linux/arm64"))
    push(client, f"{ns}/src", "1", index)
    amd64 = index.children[0]
    put(client, f"{ns}/src", tag_of(amd64.digest, ".sig"), signature(signer, "r.example/x", amd64.digest))
    # The platforms are signed, the index is not: the tag names the index, so it is rejected.
    with pytest.raises(RejectedImage, match=re.escape(f"for {index.digest}")):
        copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/all"))
    # Only amd64 kept: DMI writes a new index; its one platform is signed, so it is published.
    result = copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/amd64"),
                                                       platforms=("linux/amd64",))
    assert result.filtered and result.target_digest
    assert client.get_manifest(f"{ns}/amd64", "1").status_code == 200
    # The index signed, a platform not: with the filter keeping arm64, arm64's own signature is missing.
    put(client, f"{ns}/src", tag_of(index.digest, ".sig"), signature(signer, "r.example/x", index.digest))
    assert copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/all")).target_digest
    with pytest.raises(RejectedImage, match=re.escape(f"for {index.children[1].digest}")):
        copier(open_registry, gate(signer)).copy(*refs(open_registry, f"{ns}/src", f"{ns}/arm64"),
                                                 platforms=("linux/arm64",))


def _config(path, text: str):  # type: ignore[no-untyped-def]
    import textwrap

    path.write_text(textwrap.dedent(text))
    return path


def test_dmi_sync_publishes_what_verifies_quarantines_the_rest_and_records_both(open_registry, factory, tmp_path):
    import json

    from dmi_provider.tracking.store import TrackingStore
    from tests.rig.cli import dmi

    ns, trusted, stranger = f"v{next(_ns)}", Signer(), Signer()
    client, good, bad = rig_client(open_registry), factory.image(), factory.image()
    signed(client, f"{ns}/good", good, trusted)
    signed(client, f"{ns}/bad", bad, stranger)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cosign.pub").write_bytes(pem(trusted))
    config = _config(tmp_path / "config.ini", f"""
        [DEFAULT]
        refresh = 1d
        source-registry = {open_registry.host}
        target = registry
        target-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        tag = 1
        verify = signature
        verify-keys = keys/cosign.pub

        [good]
        image = {ns}/good
        project = mirror

        [bad]
        image = {ns}/bad
        project = mirror
        verify-keys = connection:dmi_cosign
        on-verify-failure = quarantine
    """)
    db = tmp_path / "tracking.db"
    conn = json.dumps({"conn_type": "generic", "extra": {"public_key": pem(trusted).decode()}})
    done = dmi("sync", str(config), env={"DB_PATH": str(db), "AIRFLOW_CONN_DMI_COSIGN": conn})
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert f"copied: {open_registry.host}/{ns}/good:1 -> {open_registry.host}/mirror/{ns}/good:1" in done.stdout
    assert f"quarantined: {open_registry.host}/{ns}/bad:1 -> {open_registry.host}/mirror/{ns}/bad:1" in done.stdout
    rows = {r["section"]: r for r in TrackingStore(f"sqlite:///{db}").history()}
    assert rows["good"]["status"] == "copied"
    assert rows["good"]["verified_by"] == load_key("k", pem(trusted)).fingerprint
    assert rows["bad"]["status"] == "quarantined" and rows["bad"]["verified_by"] is None
    assert "signed by another key" in rows["bad"]["error"]
    assert f"quarantined at {open_registry.host}/quarantine/mirror/{ns}/bad:1" in rows["bad"]["error"]
    assert client.get_manifest(f"mirror/{ns}/bad", "1").status_code == 404
    assert client.get_manifest(f"quarantine/mirror/{ns}/bad", "1").content == bad.manifest
    state = {s["target"]: s for s in TrackingStore(f"sqlite:///{db}").state()}
    assert state[f"{open_registry.host}/mirror/{ns}/bad:1"]["last_digest"] is None  # never published


def test_bad_verify_settings_are_named_one_line_each(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.rig.cli import dmi

    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "cosign.key").write_bytes(private)
    (tmp_path / "junk.pub").write_text("not a key\n")
    config = _config(tmp_path / "config.ini", """
        [DEFAULT]
        refresh = 1d
        target = registry
        target-registry = registry.example
        tag = 1
        project = mirror

        [private]
        image = a
        verify = signature
        verify-keys = cosign.key

        [junk]
        image = b
        verify = signature
        verify-keys = junk.pub missing.pub

        [nokeys]
        image = c
        verify = attestations

        [daemon]
        image = d
        verify = signature
        verify-keys = connection:k
        engine = docker

        [pointless]
        image = e
        verify-attestations = slsa

        [self-quarantine]
        image = f
        verify = signature
        verify-keys = connection:k
        on-verify-failure = quarantine
        quarantine-repository = mirror/f
    """)
    done = dmi("validate", str(config))
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert "section 'private': verify-keys = 'cosign.key': " in out and "this is a private key" in out
    assert "section 'junk': verify-keys = 'junk.pub missing.pub': " in out
    assert f"no such file: {tmp_path / 'missing.pub'}" in out
    assert "section 'nokeys': verify-keys: missing: verify = attestations needs verify-keys" in out
    assert "section 'daemon': verify = 'signature': needs engine = registry" in out
    assert "section 'pointless': verify-attestations = 'slsa': applies only with verify = signature or " \
           "attestations" in out
    assert "section 'self-quarantine': quarantine-repository = 'mirror/f': is the target repository" in out


def test_dmi_copy_verifies_with_verify_key_and_dmi_plan_says_what_it_will_check(open_registry, factory, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.rig.cli import dmi

    ns, trusted = f"v{next(_ns)}", Signer()
    client, artifact = rig_client(open_registry), factory.image()
    signed(client, f"{ns}/src", artifact, trusted)
    (tmp_path / "cosign.pub").write_bytes(pem(trusted))
    (tmp_path / "other.pub").write_bytes(pem(Signer()))
    (tmp_path / "cosign.key").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    host = open_registry.host
    base = ["copy", "--insecure", host, f"{host}/{ns}/src:1"]
    refused = dmi(*base, f"{host}/{ns}/no:1", "--verify-key", str(tmp_path / "other.pub"))
    assert refused.returncode == 1 and "dmi copy: failed: " in refused.stderr
    assert "signed by another key" in refused.stderr and "not published" in refused.stderr
    assert client.get_manifest(f"{ns}/no", "1").status_code == 404
    private = dmi(*base, f"{host}/{ns}/no:1", "--verify-key", str(tmp_path / "cosign.key"))
    assert private.returncode == 2 and "this is a private key" in private.stderr
    daemon = dmi(*base, f"{host}/{ns}/no:1", "--verify-key", str(tmp_path / "cosign.pub"), "--engine", "docker")
    assert daemon.returncode == 2 and "--verify-key needs the registry engine" in daemon.stderr
    by_digest = dmi(*base, f"{host}/{ns}/no@{artifact.digest}", "--verify-key", str(tmp_path / "cosign.pub"))
    assert by_digest.returncode == 2 and "--verify-key gates a tag" in by_digest.stderr
    done = dmi(*base, f"{host}/{ns}/yes:1", "--verify-key", str(tmp_path / "other.pub"), "--verify-key",
               str(tmp_path / "cosign.pub"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"copied: {host}/{ns}/src:1 -> {host}/{ns}/yes:1 {artifact.digest}")

    config = _config(tmp_path / "config.ini", f"""
        [DEFAULT]
        refresh = 1d

        [app]
        image = {ns}/src
        tag = 1
        source-registry = {host}
        target = registry
        target-registry = {host}
        insecure-registries = {host}
        project = planned
        verify = attestations
        verify-keys = cosign.pub
        verify-attestations = slsa
        on-verify-failure = quarantine
    """)
    validated = dmi("validate", str(config))
    assert f"; verify attestations (1 key(s), else quarantined in quarantine/planned/{ns}/src)" in validated.stdout
    plan = dmi("plan", str(config))
    assert plan.returncode == 0, plan.stderr[-2000:]
    fingerprint = load_key("k", pem(trusted)).fingerprint
    assert (f"[app]   verify before tagging: a signature by one of {fingerprint[:19]}…, attestations slsa; else "
            f"quarantined in quarantine/planned/{ns}/src") in plan.stdout


def test_verification_costs_no_source_request(proxy_factory, open_registry, factory):
    # What is verified is what the target holds after the copy: the source is asked nothing more.
    ns, signer = f"v{next(_ns)}", Signer()
    client, artifact = rig_client(open_registry), factory.image()
    signed(client, f"{ns}/src", artifact, signer, attest="https://slsa.dev/provenance/v1")
    counts = {}
    for name, the_gate in (("plain", None), ("verified", gate(signer, mode="attestations", attestations=("slsa",)))):
        source, target = proxy_factory(open_registry), proxy_factory(open_registry)
        settings = HostSettings()
        one = Copier(ClientPool(plain_http([source.host, target.host], {}, settings), default=settings,
                                use_docker_config=False), referrers=ReferrerFilter(), progress=lambda _: None,
                     gate=the_gate)
        result = one.copy(parse_reference(f"{source.host}/{ns}/src:1"), parse_reference(f"{target.host}/{ns}/{name}:1"))
        assert result.target_digest == artifact.digest
        counts[name] = (sorted((h.method, h.path) for h in source.hits), len(target.hits))
    assert counts["verified"][0] == [(m, p) for m, p in counts["plain"][0]]  # the same requests at the source
    extra = counts["verified"][1] - counts["plain"][1]
    assert 0 < extra <= 8  # at the target: .sig, .att, the fallback index, the two payload blobs, the tag's PUT


def test_through_the_dag_one_image_published_one_quarantined(airflow_env, open_registry, factory, tmp_path):
    from dmi_provider.tracking.store import TrackingStore

    ns, trusted = f"vdag{next(_ns)}", Signer()
    client, good, bad = rig_client(open_registry), factory.image(), factory.image()
    signed(client, f"{ns}/good", good, trusted)
    signed(client, f"{ns}/bad", bad, Signer())
    (tmp_path / "cosign.pub").write_bytes(pem(trusted))
    config = _config(tmp_path / "config.ini", f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {open_registry.host}
        target = registry
        target-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        tag = 1
        project = dagmirror
        verify = signature
        verify-keys = cosign.pub
        on-verify-failure = quarantine

        [good]
        image = {ns}/good

        [bad]
        image = {ns}/bad
    """)
    db = tmp_path / "tracking.db"
    run = airflow_env.run("dmi_mirror", config, env={"DB_PATH": str(db), "DMI_CACHE_DIR": str(tmp_path)})
    assert run["state"] == "failed", run["log"][-5000:]  # the quarantined image's group fails the run
    assert client.get_manifest(f"dagmirror/{ns}/good", "1").content == good.manifest
    assert client.get_manifest(f"dagmirror/{ns}/bad", "1").status_code == 404
    assert client.get_manifest(f"quarantine/dagmirror/{ns}/bad", "1").content == bad.manifest
    rows = {r["section"]: r for r in TrackingStore(f"sqlite:///{db}").history()}
    assert rows["good"]["status"] == "copied" and rows["good"]["verified_by"] == load_key("k", pem(trusted)).fingerprint
    assert rows["bad"]["status"] == "quarantined" and "signed by another key" in rows["bad"]["error"]
    assert "section 'bad': RejectedImage: " in run["log"]  # the push task's one line
