"""Hostile registries, lying manifests and misbehaving proxies (the security review's findings).

The rig's proxy plays the hostile registry or CDN in front of a real registry; `Evil` is a server on
another host name ("localhost" where the registries are "127.0.0.1") that records what reaches it and
answers what an attacker would: a 401 with its own token realm, endless bodies, non-JSON tokens."""

from __future__ import annotations

import json

import pytest

from dmi_provider.registry.client import Call, HostSettings, RegistryClient, RetryPolicy, push_scope
from dmi_provider.registry.errors import (
    InsecureRedirect,
    ManifestInvalid,
)
from dmi_provider.registry.manifest import OCI_MANIFEST, Manifest


def test_the_registry_host_is_compared_by_origin():
    from urllib.parse import urlsplit

    from dmi_provider.registry.wire import origin as _origin

    same = ["https://reg.example.io/v2/", "https://REG.example.io:443/upload", "https://reg.example.io:443"]
    assert {_origin(urlsplit(u)) for u in same} == {("reg.example.io", 443)}
    assert _origin(urlsplit("https://reg.example.io:5000/")) != _origin(urlsplit("https://reg.example.io/"))
    assert _origin(urlsplit("https://reg.example.io.evil.net/")) != _origin(urlsplit("https://reg.example.io/"))

def test_an_absolute_url_never_leaves_https_for_http():
    client = RegistryClient("registry.example.invalid", HostSettings(retry=RetryPolicy(attempts=1)))
    with pytest.raises(InsecureRedirect, match="refusing to leave https for http"):
        client.send(Call("PUT", "http://registry.example.invalid/upload/abc?digest=x", push_scope("a"),
                         content=b"data", ok=(201,)))
    client.close()

# -- Medium 3: descriptor digests are validated before they reach a URL ------------------------------------
@pytest.mark.parametrize("digest", ["sha256:" + "a" * 64 + "&from=victim/private",
                                    "sha256:../../../../victim/manifests/latest", "sha256:" + "A" * 64,
                                    "md5:" + "a" * 32, "sha256:" + "a" * 63])
def test_descriptor_digests_are_validated(digest):
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                                 "digest": "sha256:" + "b" * 64},
                      "layers": [{"mediaType": "x", "size": 1, "digest": digest}]}).encode()
    with pytest.raises(ManifestInvalid, match="is not sha256:<64 hex> or sha512:<128 hex>"):
        Manifest.parse(raw, OCI_MANIFEST)


def test_a_token_in_a_proxy_urls_user_part_is_never_shown():
    from dmi_provider.config_issues import ConfigIssue
    from dmi_provider.registry.network import redact_url

    token = "ghp_0123456789abcdefTOKEN"
    assert redact_url(f"http://{token}@proxy.corp:3128") == "http://***@proxy.corp:3128"
    assert redact_url("http://user:secret@proxy.corp:3128") == "http://***@proxy.corp:3128"
    assert redact_url("http://proxy.corp:3128") == "http://proxy.corp:3128"
    issue = ConfigIssue("config.ini", "bad", "s", "target-proxy", f"http://{token}@proxy.corp:3128")
    assert token not in str(issue) and "http://***@proxy.corp:3128" in str(issue)


def test_json_nested_too_deeply_is_invalid_not_a_crash_airflow_retries():
    # A RecursionError would be retried by Airflow (each retry of a manifest another Docker Hub pull).
    import base64

    from dmi_provider.errors import is_retryable
    from dmi_provider.registry.bearer import jwt_lifetime, token_of
    from dmi_provider.registry.errors import AuthError, registry_error_text

    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ManifestInvalid, match="nested too deeply") as invalid:
        Manifest.parse(deep, OCI_MANIFEST)
    with pytest.raises(AuthError, match="not JSON") as auth:
        token_of(b'{"token": ' + deep + b"}", "hub.example")
    assert not is_retryable(invalid.value) and not is_retryable(auth.value)
    payload = base64.urlsafe_b64encode(b'{"exp": ' + deep + b"}").decode().rstrip("=")
    assert jwt_lifetime(f"e30.{payload}.sig") is None  # not a JWT DMI can read: the default lifetime
    assert registry_error_text(deep)[0] is None


def _body(chunks, pause: float = 0.0):
    """A streamed answer whose chunks come `pause` seconds apart, as a slow source sends them."""
    import time

    import httpx

    def stream():
        for chunk in chunks:
            time.sleep(pause)
            yield chunk

    return httpx.Response(200, content=stream(), request=httpx.Request("GET", "http://src.example/v2/r/blobs/x"))


def _reader(stall: float):
    from types import SimpleNamespace

    from dmi_provider.registry.blobs import BlobCopy
    from dmi_provider.registry.locations import BlobLocations
    from dmi_provider.registry.network import Network

    source = SimpleNamespace(registry="src.example", network=Network(None, None, True))
    return BlobCopy(source, None, "r", "r", BlobLocations(), stall=stall)  # type: ignore[arg-type]


def test_the_stall_timer_counts_the_sources_reads_not_the_uploads_time():
    # Issue 26 item 2, review: a fleet upload-slot wait or a slow PATCH between two reads is not the source's.
    import time

    from dmi_provider.registry.manifest import Descriptor

    blob = Descriptor("application/octet-stream", "sha256:" + "0" * 64, 3 * 70_000)
    got = []
    for chunk in _reader(stall=0.5)._read(_body([b"a" * 70_000] * 3), blob):
        got.append(chunk)
        time.sleep(0.7)  # the upload's time, longer than the stall timeout
    assert sum(map(len, got)) == 3 * 70_000


def test_a_source_sending_too_little_for_the_stall_timeout_is_stalled_and_says_it_is_the_source():
    from dmi_provider.registry.errors import Stalled
    from dmi_provider.registry.manifest import Descriptor

    blob = Descriptor("application/octet-stream", "sha256:" + "0" * 64, 100_000)
    with pytest.raises(Stalled, match=r"stalled at 0.0 MiB of 0.1 MiB: less than 64 KiB from the source in 1s") as exc:
        list(_reader(stall=0.5)._read(_body([b"a" * 1000] * 100, pause=0.2), blob))
    assert (exc.value.registry, exc.value.side) == ("src.example", "source")
