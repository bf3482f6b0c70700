"""Signatures, attestations and SBOMs travel with the image, byte for byte, and verify at the target.

The source and target are real docker-registry 2.8 processes (no referrers API: the fallback tag schema is
exercised for real); the rig's proxy plays a registry with the referrers API for the other path."""

from __future__ import annotations

import itertools

import pytest

_ns = itertools.count(1)


@pytest.mark.parametrize("text, error", [
    ("referrers = maybe", "referrers = 'maybe': expected true or false"),
    ("referrers-include = signatures", "referrers-include = 'signatures': 'signatures': signature, attestation, "
     "sbom, or an artifact type such as application/spdx+json"),
])
def test_bad_referrer_keys(text, error):
    from dmi_provider.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as exc:
        parse_config(f"[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\n{text}\n", "config.ini", {})
    assert str(exc.value.issues[0]) == f"config.ini:7: section 'a': {error}"


def test_a_plan_never_sets_aside_the_manifests_dmi_made_and_one_too_large_leaves_room_for_the_rest():
    # Review of issue 26 item 3: a filtered index exists only in DMI (the source has no such digest to read
    # again); a manifest over the XCom room goes aside alone, the smaller ones after it still travel whole.
    import json

    from dmi_provider.registry.manifest import OCI_INDEX, OCI_MANIFEST, Manifest, filter_index
    from dmi_provider.registry.plan import Plan

    def image(pad: int) -> Manifest:
        body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"pad": "x" * pad},
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                           "digest": "sha256:" + "1" * 64}, "layers": []}
        return Manifest.parse(json.dumps(body).encode(), OCI_MANIFEST)

    big, small = image(1_400_000), image(10)
    index = Manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": m.digest, "size": len(m.raw),
         "platform": {"os": "linux", "architecture": arch}} for m, arch in ((big, "amd64"), (small, "arm64"))]}
    ).encode(), OCI_INDEX)
    filtered, _kept = filter_index(index, ("linux/amd64", "linux/arm64"))
    plan = Plan("s/a:1", "t/a:1", index.digest, None, OCI_INDEX, manifests=[big, small, filtered])
    carried = plan.to_dict(carried=1 << 20)
    assert [bool(m.get("aside")) for m in carried["manifests"]] == [True, False, False]


def test_under_referrers_max_what_verify_needs_travels_first():
    # Review of issue 27: daily vulnerability reports must not push the one signature out of referrers-max.
    from dmi_provider.registry.manifest import Descriptor
    from dmi_provider.registry.referrers import CREATED, Finder, ReferrerFilter

    def referrer(kind: str, day: int) -> Descriptor:
        return Descriptor("application/vnd.oci.image.manifest.v1+json", f"sha256:{day:064x}", 100,
                          artifact_type=kind, annotations=((CREATED, f"2026-11-{day:02d}T00:00:00Z"),))

    listed = [referrer("application/vnd.dev.sigstore.bundle.v0.3+json", 1)] + [
        referrer("application/spdx+json", day) for day in range(2, 12)]
    warned: list[str] = []
    plain = Finder(None, None, "r", "r", None, ReferrerFilter(most=3), warned.append)  # type: ignore[arg-type]
    assert listed[0] not in plain._newest("sha256:" + "f" * 64, listed)  # the newest three SBOMs only
    gated = Finder(None, None, "r", "r", None, ReferrerFilter(most=3, first=("signature", "attestation")),
                   warned.append)  # type: ignore[arg-type]
    kept = gated._newest("sha256:" + "f" * 64, listed)
    assert listed[0] in kept and len(kept) == 3


def test_the_plans_of_one_xcom_value_share_its_manifest_room():
    # Review of issue 26 item 3: a section listed by tags-* filters hands all its plans on in one XCom value.
    import json

    from dmi_provider.mirror import Pulled
    from dmi_provider.registry.manifest import OCI_MANIFEST, Manifest
    from dmi_provider.registry.plan import Plan

    def image(n: int) -> Manifest:
        body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"pad": str(n) * 600_000},
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                           "digest": "sha256:" + "1" * 64}, "layers": []}
        return Manifest.parse(json.dumps(body).encode(), OCI_MANIFEST)

    plans = [Plan(f"s/a:{n}", f"t/a:{n}", image(n).digest, None, OCI_MANIFEST, manifests=[image(n)]) for n in range(3)]
    carried = Pulled("t", False, plans).to_xcom()
    assert [bool(p["manifests"][0].get("aside")) for p in carried["plans"]] == [False, True, True]


def test_a_deferred_task_carries_at_most_the_xcom_room_of_manifests():
    from dmi_provider.mirror import manifests_from_xcom, manifests_to_xcom

    fetched = {f"sha256:{n:064x}": ("application/vnd.oci.image.manifest.v1+json", bytes([n]) * 700_000)
               for n in range(3)}
    kept = manifests_from_xcom(manifests_to_xcom(fetched))
    assert list(kept) == [f"sha256:{0:064x}"] and kept[f"sha256:{0:064x}"] == fetched[f"sha256:{0:064x}"]
