from __future__ import annotations

import pytest

from dmi_provider.registry.reference import InvalidReference, Reference, check_host, parse_reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", Reference("docker.io", "library/alpine", "latest")),
        ("alpine:3.20", Reference("docker.io", "library/alpine", "3.20")),
        ("istio/proxyv2:1.7.0", Reference("docker.io", "istio/proxyv2", "1.7.0")),
        ("docker.io/alpine", Reference("docker.io", "library/alpine", "latest")),
        ("index.docker.io/library/alpine:3", Reference("docker.io", "library/alpine", "3")),
        ("localhost:5000/a/b:t", Reference("localhost:5000", "a/b", "t")),
        ("127.0.0.1:5000/x", Reference("127.0.0.1:5000", "x", "latest")),
        ("localhost/x", Reference("localhost", "x", "latest")),
        ("ghcr.io/o/r@sha256:" + "a" * 64, Reference("ghcr.io", "o/r", None, "sha256:" + "a" * 64)),
        ("q.io/r:t@sha256:" + "b" * 64, Reference("q.io", "r", "t", "sha256:" + "b" * 64)),
        ("[::1]:5000/r", Reference("[::1]:5000", "r", "latest")),
    ],
)
def test_parse_and_normalise(text, expected):
    assert parse_reference(text) == expected


def test_str_and_api_host():
    ref = parse_reference("alpine:3.20")
    assert str(ref) == "docker.io/library/alpine:3.20"
    assert ref.api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    "text",
    ["", " alpine", "Alpine", "alpine:", "alpine:.bad", "a//b", "-a", "a/b:" + "t" * 129, "a@sha256:short",
     "a/b:c:d", "x" * 300, "host:99999/x", "a/../b", "a?b"],
)
def test_invalid_references(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_hosts():
    assert check_host("registry-1.docker.io") == "docker.io"
    assert check_host("my.registry:8443") == "my.registry:8443"
    for bad in ("http://x", "x/y", "a:b", ":80", "x:0"):
        with pytest.raises(InvalidReference):
            check_host(bad)
