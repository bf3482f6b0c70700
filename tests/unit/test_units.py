"""Unit tests of the pieces that need no server: challenge parsing, the token cache, manifests, index
filtering and platform matching, the retry policy, the docker engine's error types, and mirror.py's
outcomes."""

from __future__ import annotations

import json
import time

import pytest

from dmi_provider import mirror
from dmi_provider.errors import DmiError, is_retryable
from dmi_provider.mirror import Pulled
from dmi_provider.registry.auth import Challenge, TokenCache, parse_challenge
from dmi_provider.registry.client import RetryPolicy
from dmi_provider.registry.copy import CopyResult, Plan
from dmi_provider.registry.errors import ManifestInvalid, RegistryError
from dmi_provider.registry.manifest import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    SOURCE_DIGEST,
    SOURCE_PLATFORMS,
    Manifest,
    filter_index,
    platform_matches,
)
from dmi_provider.spec import MirrorSpec, SourceSpec, TargetSpec

D = ["sha256:" + c * 64 for c in "0123456789"]


# -- auth -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"',
     Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")),
    ('Basic realm="Registry Realm"', Challenge("basic", "Registry Realm", "")),
    ("bearer realm=https://r.example/t, service=reg", Challenge("bearer", "https://r.example/t", "reg")),
    ('Bearer realm="https://r.example/t?x=\\"q\\"",service="s"', Challenge("bearer", 'https://r.example/t?x=\\"q\\"',
                                                                       "s")),
    ("Negotiate", Challenge("negotiate", "", "")),
])
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


def test_token_cache_renews_at_ninety_percent(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = TokenCache()
    key = ("https://auth/token", "svc", "repository:a:pull")
    cache.put(key, "t1", 100)
    now[0] += 89
    assert cache.get(key) == "t1"
    now[0] += 2  # past 90% of the lifetime: ask again rather than die mid-request
    assert cache.get(key) is None
    cache.put(key, "t2", 0)  # a zero lifetime still lasts a moment
    assert cache.get(key) == "t2"
    cache.drop(key)
    assert cache.get(key) is None


# -- manifests ------------------------------------------------------------------------------------------
def index(*platforms: str, media: str = OCI_INDEX) -> Manifest:
    entries = [{"mediaType": OCI_MANIFEST, "digest": D[i], "size": 100 + i,
                "platform": dict(zip(("os", "architecture", "variant"), p.split("/"), strict=False))}
               for i, p in enumerate(platforms)]
    return Manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": entries}).encode(), media)


def test_filter_index_keeps_the_wanted_platforms_and_says_where_it_came_from():
    source = index("linux/amd64", "linux/arm64/v8", "linux/arm/v7", media=DOCKER_LIST)
    filtered, children = filter_index(source, ("linux/arm64", "linux/amd64"))
    assert [c.platform for c in children] == ["linux/amd64", "linux/arm64/v8"]
    assert filtered.media_type == DOCKER_LIST and filtered.digest != source.digest
    assert filtered.annotation(SOURCE_DIGEST) == source.digest
    assert filtered.annotation(SOURCE_PLATFORMS) == "linux/arm64,linux/amd64"
    assert filter_index(source, ("windows/amd64",))[1] == ()


@pytest.mark.parametrize(("have", "want", "match"), [
    ("linux/arm64/v8", "linux/arm64", True), ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm/v7", "linux/arm/v6", False), ("linux/arm/v7", "linux/arm", True),
    ("linux/amd64", "linux/arm64", False), (None, "linux/amd64", False), ("linux/arm", "linux/arm/v7", False),
])
def test_platform_matching(have, want, match):
    assert platform_matches(have, want) is match


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "is not JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (b'{"mediaType": "application/vnd.oci.artifact.manifest.v1+json"}', "unsupported media type"),
    (b'{"mediaType": "%s", "layers": {"a": 1}}' % OCI_MANIFEST.encode(), "layers is not a list"),
    (b'{"mediaType": "%s", "layers": [{"size": 1}]}' % OCI_MANIFEST.encode(), "a descriptor has no digest"),
    (b'{"mediaType": "%s", "config": {"digest": "%s", "size": "12"}}' % (OCI_MANIFEST.encode(), D[0].encode()),
     "invalid size '12'"),
    (b'{"mediaType": "%s", "manifests": ["x"]}' % OCI_INDEX.encode(), "a descriptor is not a JSON object"),
])
def test_unusable_manifests_are_registry_errors_that_do_not_retry(raw, message):
    with pytest.raises(ManifestInvalid, match=message) as exc:
        Manifest.parse(raw, "")
    assert isinstance(exc.value, RegistryError) and not is_retryable(exc.value)


# -- retries ------------------------------------------------------------------------------------------
def test_retry_policy_honours_retry_after_within_bounds(monkeypatch):
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=8.0)
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(0, 600.0) == 8.0  # a Retry-After is capped by max_delay
    monkeypatch.setattr("random.uniform", lambda a, b: b)  # the top of the full-jitter range
    assert [policy.delay(n, None) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_unknown_exceptions_retry_and_dmi_errors_say():
    assert is_retryable(OSError("disk")) and is_retryable(DmiError("x", retryable=True))
    assert not is_retryable(DmiError("x")) and not is_retryable(RegistryError("404"))


# -- the docker engine's error types --------------------------------------------------------------------
@pytest.mark.parametrize(("message", "refused"), [
    ("unauthorized: authentication required", True),
    ("denied: requested access to the resource is denied", True),
    ("manifest unknown: manifest unknown", True),
    ("name unknown: repository name not known to registry", True),
    ("pull access denied for x, repository does not exist or may require 'docker login'", True),
    ("no basic auth credentials", True),
    ("toomanyrequests: You have reached your pull rate limit.", False),
    ("received unexpected HTTP status: 502 Bad Gateway", False),
    ("unknown blob", False),
])
def test_docker_stream_errors_are_typed_by_the_registry_code(message, refused):
    from dmi_provider.engines.docker import DockerRefused, stream_error

    error = stream_error("push x", message)
    assert isinstance(error, DockerRefused) is refused and error.retryable is not refused
    assert str(error) == f"push x: {message}"


# -- mirror.py -------------------------------------------------------------------------------------------
def test_outcomes_from_what_the_tasks_left():
    spec = MirrorSpec(section="s", source=SourceSpec(repository="a/b"),
                      target=TargetSpec(kind="registry", registry="reg.example", repository="m/b"))
    pairs = (("1", "1"), ("2", "2"), ("3", "3"))
    plan = Plan("docker.io/a/b:1", "reg.example/m/b:1", D[1], None, "application/vnd.oci.image.manifest.v1+json",
                changed=True, ratelimit_remaining=7)
    unchanged = Plan("docker.io/a/b:2", "reg.example/m/b:2", D[1], D[1], plan.media_type, changed=False)
    pulled = Pulled("reg.example", False, [plan, unchanged])
    pushed = [CopyResult(plan.source, plan.target, "copied", D[1], D[1], plan.media_type, bytes_transferred=9,
                         blobs_copied=1, ratelimit_remaining=6)]
    run = mirror.RunInfo("dag", "run")
    got = mirror.outcomes(spec, pairs, run, pulled, pushed, None)
    assert [(o.target, o.status, o.target_digest) for o in got] == [
        ("reg.example/m/b:1", "copied", D[1]), ("reg.example/m/b:2", "unchanged", D[1]),
        ("reg.example/m/b:3", "failed", None)]
    assert (got[0].bytes_transferred, got[0].ratelimit_remaining) == (9, 6)
    assert got[2].error == mirror.NOT_RUN
    assert mirror.failure(got) == f"reg.example/m/b:3: {mirror.NOT_RUN}"
    assert [uri for uri, _ in mirror.asset_events(got)] == ["oci://reg.example/m/b:1"]
    failed = mirror.outcomes(spec, pairs, run, pulled, None, "RegistryError: HTTP 500")
    assert [o.status for o in failed] == ["failed", "unchanged", "failed"]
    assert failed[0].error == "RegistryError: HTTP 500" and failed[0].source_digest == D[1]
    dry = mirror.outcomes(spec, pairs, run, Pulled("reg.example", True, pulled.plans), None, None)
    assert [o.status for o in dry] == ["dry-run", "dry-run", "failed"]


def test_budget_chart_and_headline_carry_their_numbers():
    from datetime import UTC, datetime, timedelta

    from dmi_provider.plugins.charts import budget_chart, budget_headline

    start = datetime(2026, 11, 29, 12, tzinfo=UTC)
    points = [{"finished_at": start + timedelta(minutes=i), "remaining": 100 - 3 * i, "limit": 100,
               "counted_for": "192.0.2.1", "dag_id": "dmi_mirror", "run_id": f"r{i // 2}", "section": f"s<{i}>",
               "pulls": 3} for i in range(5)]
    svg = budget_chart("docker.io", points)
    assert 'data-registry="docker.io" data-points="5" data-runs="3"' in svg
    assert svg.count('class="dmi-point"') == 5 and svg.count('class="dmi-run"') == 3
    assert 'data-remaining="88"' in svg and "s&lt;4&gt;" in svg and "<4>" not in svg  # escaped
    assert budget_chart("docker.io", []) == ""
    line = budget_headline("docker.io", points[-1], 2)
    assert 'data-remaining="88" data-waiting="2"' in line
    assert "<strong>docker.io</strong>: 88 of 100 pulls left for 192.0.2.1 (as of 2026-11-29 12:04 UTC); 2 images " \
        "waiting for pulls" in line


def test_the_quarantine_repository_lives_where_the_target_repositories_do():
    # GAR's repositories are PROJECT/REPOSITORY/<path>: the quarantine one too, else GAR refuses the writes.
    from dmi_provider.engines.base import _namespaced
    from dmi_provider.registry.gate import Gate
    from dmi_provider.targets.base import Endpoint
    from dmi_provider.verify import VerifyPolicy

    gate = Gate(VerifyPolicy(), "quarantine/istio/proxyv2")
    assert _namespaced(gate, Endpoint("europe-docker.pkg.dev", namespace="proj/mirror")).quarantine == \
        "proj/mirror/quarantine/istio/proxyv2"  # type: ignore[union-attr]
    assert _namespaced(gate, Endpoint("123.dkr.ecr.eu-west-1.amazonaws.com")) is gate


def test_a_verify_key_held_by_a_variable_or_a_connection_and_one_that_is_missing(monkeypatch):
    import json

    from dmi_provider.errors import DmiError
    from dmi_provider.hooks.connections import public_key_text

    monkeypatch.setenv("AIRFLOW_VAR_COSIGN_PUB", "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    monkeypatch.setenv("AIRFLOW_CONN_RELEASE_KEY", json.dumps({"conn_type": "generic", "extra": {"public_key": "PEM"}}))
    assert public_key_text("variable", "cosign_pub").startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_text("connection", "release_key") == "PEM"
    with pytest.raises(DmiError, match="verify-keys: variable 'nope' does not exist: create it"):
        public_key_text("variable", "nope")
    with pytest.raises(DmiError, match="verify-keys: connection 'nope' does not exist"):
        public_key_text("connection", "nope")


def test_blob_location_hints_know_their_origin_and_an_old_cache_file_gains_it(tmp_path):
    import sqlite3

    from dmi_provider.registry.locations import BlobLocations

    path = tmp_path / "blob-locations.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE blob_locations (registry TEXT NOT NULL, digest TEXT NOT NULL, repository TEXT NOT NULL, "
                "seen REAL NOT NULL, PRIMARY KEY (registry, digest, repository))")
    old.execute("INSERT INTO blob_locations VALUES ('r', 'd', 'legacy', 1.0)")
    old.commit()
    old.close()
    hints = BlobLocations(path)
    hints.add("r", "d", "mine", "docker.io")
    hints.add("r", "d", "theirs", "quay.io")
    hints.add("r", "d", "mine")  # seen again, origin unknown this time: the known one is kept
    assert hints.holders("r", "d", "docker.io") == {"legacy", "mine"}  # an unknown origin is not excluded
    assert hints.holders("r", "d", "evil.example") == {"legacy"}
    assert hints.holders("r", "d") == {"legacy", "mine", "theirs"}
    hints.close()
    again = BlobLocations(path)  # the file alone, a new process
    assert again.holders("r", "d", "docker.io") == {"legacy", "mine"}
    again.close()
