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
