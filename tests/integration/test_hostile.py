"""Hostile registries, lying manifests and misbehaving proxies (the security review's findings).

The rig's proxy plays the hostile registry or CDN in front of a real registry; `Evil` is a server on
another host name ("localhost" where the registries are "127.0.0.1") that records what reaches it and
answers what an attacker would: a 401 with its own token realm, endless bodies, non-JSON tokens."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dmi_provider.errors import is_retryable
from dmi_provider.registry.client import RegistryClient, RetryPolicy
from dmi_provider.registry.copy import Copier
from dmi_provider.registry.errors import (
    AuthError,
    DigestMismatch,
    ManifestInvalid,
    NotFound,
    RegistryError,
)
from dmi_provider.registry.manifest import OCI_MANIFEST
from dmi_provider.registry.settings import insecure
from tests.integration.test_copy import FAST_RETRY, make_pool, ref
from tests.rig.fixtures import BASIC_USER, rig_client
from tests.rig.images import push
from tests.rig.proxy import Fault

BIG = 64 << 20  # what an endless body would send; the client must stop long before


class Evil:
    """Another host. `routes` maps a path prefix to (status, headers, body or a byte count to stream)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.sent = 0
        self.routes: dict[str, tuple[int, dict[str, str], Any]] = {}  # body: bytes, a count, or path -> answer
        evil = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                evil.seen.append((self.command, self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = next((v for k, v in evil.routes.items() if self.path.startswith(k)),
                                             (500, {}, b"no route"))
                if callable(body):  # an answer that depends on the path (a page of a listing)
                    status, headers, body = body(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(body if isinstance(body, int) else len(body)))
                self.end_headers()
                try:
                    if isinstance(body, int):
                        chunk = b"x" * 65536
                        for _ in range(body // len(chunk)):
                            self.wfile.write(chunk)
                            evil.sent += len(chunk)
                    elif self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_PUT = do_POST = do_HEAD = do_PATCH = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:  # the same server, by another name than the rig's 127.0.0.1
        return f"localhost:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def evil():
    server = Evil()
    yield server
    server.stop()


def _image(factory, repo_name, registry, creds=None):
    artifact = factory.image(layers=[factory.layer(256 * 1024), factory.layer()])
    repo = repo_name("src")
    push(rig_client(registry, creds), repo, "v1", artifact)
    return artifact, repo


# -- High 1: an upload Location on another host gets no credentials, https never becomes http -----------------
def test_upload_location_on_another_host_gets_no_credentials(proxy_factory, open_registry, basic_registry, factory,
                                                            repo_name, evil):
    _artifact, src_repo = _image(factory, repo_name, open_registry)
    target = proxy_factory(basic_registry)
    target.inject(Fault(method="POST", path="/blobs/uploads/", status=202, times=None,
                        headers={"Location": f"http://{evil.host}/upload/abc?_state=x"}))
    evil.routes["/upload/"] = (500, {}, b"stolen")
    pool = make_pool(open_registry, target, creds={target.host: BASIC_USER})
    with pytest.raises(RegistryError):
        Copier(pool).copy(ref(open_registry, src_repo), ref(target, repo_name("dst")))
    puts = [s for s in evil.seen if s[0] == "PUT"]
    assert puts and all(auth is None for _method, _path, auth in puts)  # the blob went, the password did not


# -- Medium 2: a 401 challenge from a redirect target is not adopted ----------------------------------------
def test_a_challenge_from_a_redirect_target_is_refused(proxy_factory, basic_registry, open_registry, factory,
                                                       repo_name, evil):
    artifact, src_repo = _image(factory, repo_name, basic_registry, BASIC_USER)
    source = proxy_factory(basic_registry)
    for blob in artifact.blobs:
        source.inject(Fault(method="GET", path=f"/blobs/{blob.digest}", status=307, times=None,
                            headers={"Location": f"http://{evil.host}/cdn/{blob.digest}"}))
    evil.routes["/cdn/"] = (401, {"WWW-Authenticate": f'Bearer realm="http://{evil.host}/token",service="evil"'},
                            b"")
    evil.routes["/token"] = (200, {"Content-Type": "application/json"}, b'{"token": "t"}')
    pool = make_pool(source, open_registry, creds={source.host: BASIC_USER})
    with pytest.raises(AuthError, match=r"\(not the registry\) answered 401; credentials are sent to"):
        Copier(pool).copy(ref(source, src_repo), ref(open_registry, repo_name("dst")))
    assert not [s for s in evil.seen if s[1].startswith("/token")]  # its realm was never asked
    assert all(auth is None for _method, _path, auth in evil.seen)


def test_a_malformed_manifest_is_one_clear_error(proxy_factory, open_registry, repo_name):
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": "nope"}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    proxy = proxy_factory(open_registry)
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}
    proxy.inject(Fault(method="HEAD", path="/manifests/", status=200, headers=headers))
    proxy.inject(Fault(method="GET", path="/manifests/", status=200, headers=headers, body=body))
    with pytest.raises(ManifestInvalid, match="layers is not a list") as exc:
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, repo_name()), ref(open_registry, repo_name()))
    assert not is_retryable(exc.value)


# -- Medium 7: identity encoding, and compressed answers handled anyway ------------------------------------
@pytest.mark.parametrize("mode", ["if-accepted", "always"])
def test_a_compressing_proxy_does_not_break_digests(proxy_factory, open_registry, factory, repo_name, mode):
    artifact, src_repo = _image(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    proxy.inject(Fault(method="GET", path="/blobs/|/manifests/", gzip=mode, times=None))
    dst = repo_name("dst")
    result = Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, dst))
    assert result.target_digest == artifact.digest
    # We ask for identity, so a well-behaved CDN compresses nothing; a broken one is decoded.
    assert proxy.compressed == (0 if mode == "if-accepted" else len(artifact.blobs) + 1)


# -- Low 8: manifests by other digests are verified with their own algorithm -----------------------------
def test_manifests_are_verified_with_the_digest_algorithm(proxy_factory, open_registry, factory, repo_name):
    artifact, src_repo = _image(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    client = RegistryClient(proxy.host, insecure(RetryPolicy(**FAST_RETRY)))
    good = "sha512:" + hashlib.sha512(artifact.manifest).hexdigest()
    proxy.inject(Fault(method="GET", path="/manifests/sha512:", status=200, times=None, body=artifact.manifest,
                       headers={"Content-Type": artifact.media_type}))
    assert client.get_manifest(src_repo, good).digest == artifact.digest
    with pytest.raises(DigestMismatch, match="manifest bytes hash to sha512:"):
        client.get_manifest(src_repo, "sha512:" + "0" * 128)
    before = proxy.count()
    with pytest.raises(ManifestInvalid, match="cannot verify a 'md5' digest"):
        client.get_manifest(src_repo, "md5:" + "0" * 32)
    assert proxy.count() == before  # refused before asking
    client.close()


# -- Low 9: a child must be what its index says -------------------------------------------------------------
def _lying_index(entries) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()


def test_an_index_that_lies_about_its_children_is_refused(open_registry, factory, repo_name):
    image = factory.image(media="oci")
    inner = factory.multiarch(media="oci")
    repo = repo_name("src")
    client = rig_client(open_registry)
    push(client, repo, "image", image)
    push(client, repo, "inner", inner)
    platform = {"os": "linux", "architecture": "amd64"}
    cases = {
        "size": ({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": 999999, "platform": platform},
                 f"has {len(image.manifest)} bytes, its index says 999999"),
        "nested": ({"mediaType": OCI_MANIFEST, "digest": inner.digest, "size": len(inner.manifest),
                    "platform": platform}, "is an index"),
    }
    for tag, (entry, message) in cases.items():
        client.put_manifest(repo, tag, _lying_index([entry]), "application/vnd.oci.image.index.v1+json")
        with pytest.raises(ManifestInvalid, match=message):
            Copier(make_pool(open_registry)).copy(ref(open_registry, repo, tag), ref(open_registry, repo_name()))


# -- Low 13: a blob whose descriptor lies about its size is read once, and fails without retries ------------
def test_a_lying_blob_size_is_not_retried(proxy_factory, open_registry, factory, repo_name):
    layer = factory.layer(128 * 1024)
    image = factory.image(layers=[layer], media="oci")
    lie = json.loads(image.manifest)
    lie["layers"][0]["size"] = 1000
    repo = repo_name("src")
    client = rig_client(open_registry)
    push(client, repo, "honest", image)
    client.put_manifest(repo, "v1", json.dumps(lie).encode(), OCI_MANIFEST)
    proxy = proxy_factory(open_registry)
    with pytest.raises(DigestMismatch, match="more than the 1000 bytes its descriptor says") as exc:
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, repo), ref(open_registry, repo_name()))
    assert not is_retryable(exc.value)  # Airflow does not try again either
    assert sum(1 for h in proxy.hits if h.method == "GET" and layer.digest in h.path) == 1


def test_a_corrupted_transfer_is_tried_twice_then_fails_for_good(proxy_factory, open_registry, factory, repo_name):
    artifact, src_repo = _image(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    big = artifact.layers[0]
    proxy.inject(Fault(method="GET", path=f"/blobs/{big.digest}", corrupt=True, times=None))
    with pytest.raises(DigestMismatch) as exc:
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, repo_name("dst")))
    assert not is_retryable(exc.value)
    assert sum(1 for h in proxy.hits if h.method == "GET" and big.digest in h.path) == 2


# -- Medium 4: bounded reads, and parse failures as clear registry errors ----------------------------------
def test_error_and_token_bodies_are_read_only_so_far(evil):
    evil.routes["/v2/huge/"] = (404, {"Content-Type": "application/json"}, BIG)
    client = RegistryClient(evil.host, insecure(RetryPolicy(**FAST_RETRY)))
    with pytest.raises(NotFound):
        client.get_manifest("huge", "v1")
    assert evil.sent < 16 << 20  # 64 KiB read; the rest stays in socket buffers at most
    evil.sent = 0
    evil.routes = {"/v2/": (401, {"WWW-Authenticate": f'Bearer realm="http://{evil.host}/token",service="s"'}, b""),
                   "/token": (200, {"Content-Type": "application/json"}, BIG)}
    with pytest.raises(AuthError, match="token service answered with something that is not JSON") as exc:
        client.head_manifest("a", "v1")
    assert not is_retryable(exc.value) and evil.sent < 16 << 20
    evil.routes["/token"] = (200, {"Content-Type": "text/html"}, b"<html>login page</html>")
    with pytest.raises(AuthError, match=r"token service answered with an HTML page: a captive portal"):
        client.head_manifest("a", "v1")
    client.close()


# -- Round two (issue 26) --------------------------------------------------------------------------------
def test_tag_list_pages_stay_on_the_registrys_origin(evil):
    other = evil.host.replace("localhost", "127.0.0.1")  # the same server under another origin
    evil.routes["/v2/r/tags/list"] = (200, {"Content-Type": "application/json",
                                           "Link": f'<http://{other}/v2/r/tags/list?last=b>; rel="next"'},
                                      json.dumps({"tags": ["a", "b"]}).encode())
    client = RegistryClient(evil.host, insecure(RetryPolicy(**FAST_RETRY)))
    with pytest.raises(RegistryError, match=f"the next page is on http://{other}/v2/r/tags/list\\?last=b, not on "):
        client.list_tags("r")
    assert [p for _, p, _ in evil.seen] == ["/v2/r/tags/list?n=500"]  # the foreign page was never asked for
    client.close()


def test_a_tag_listing_is_capped_checked_and_deduplicated_while_it_is_read(evil, monkeypatch):
    from dmi_provider.registry import client as client_module

    monkeypatch.setattr(client_module, "MAX_LISTED_TAGS", 2500)
    pages = []

    def page(path: str):  # 1,000 new tags a page, every page repeating the last one's and bad names
        n = len(pages)
        pages.append(path)
        tags = [f"v{n}.{i}" for i in range(1000)] + [f"v{n - 1}.{i}" for i in range(1000) if n] + [
            "-bad", "a" * 129, "x/y", "", 7, None, "ok\n"]
        return 200, {"Content-Type": "application/json",
                     "Link": f'</v2/r/tags/list?n=500&last=v{n}>; rel="next"'}, json.dumps({"tags": tags}).encode()

    evil.routes["/v2/r/tags/list"] = (200, {}, page)
    client = RegistryClient(evil.host, insecure(RetryPolicy(**FAST_RETRY)))
    with pytest.raises(RegistryError, match="more than 2500 tags; mirror it by tag"):
        client.list_tags("r")
    assert len(pages) == 3  # it stopped at the page that went past the cap, not after 200 pages

    monkeypatch.setattr(client_module, "MAX_LISTED_TAGS", 100_000)
    pages.clear()
    evil.routes["/v2/r/tags/list"] = (200, {}, lambda path: _last(page, path))
    got = client.list_tags("r")
    assert got == [f"v0.{i}" for i in range(1000)]  # names a tag can have, each once, in the registry's order
    evil.routes["/v2/r/tags/list"] = (200, {"Content-Type": "application/json"}, b'{"tags": "abc"}')
    with pytest.raises(RegistryError, match="`tags` is not a list"):
        client.list_tags("r")
    client.close()


def _last(page, path):
    status, _headers, body = page(path)
    return status, {"Content-Type": "application/json"}, body  # one page, no Link


def test_upload_state_tokens_stay_out_of_error_texts(proxy_factory, open_registry, factory, repo_name):
    # The registry's upload Location carries `_state=` (an HMAC'd upload state): errors are shown in the UI.
    _artifact, repo = _image(factory, repo_name, open_registry)
    target = proxy_factory(open_registry)
    target.faults.append(Fault(method="PUT", path="/blobs/uploads/", status=400, times=None,
                               body=b'{"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "no"}]}'))
    with pytest.raises(RegistryError) as exc:
        Copier(make_pool(open_registry, target)).copy(ref(open_registry, repo), ref(target, repo_name("dst")))
    assert "/blobs/uploads/" in str(exc.value) and "BLOB_UPLOAD_INVALID" in str(exc.value)
    assert "_state" not in str(exc.value) and "_state" not in (exc.value.url or "")
    assert "digest=sha256%3A" in str(exc.value) or "digest=sha256:" in str(exc.value)
    assert "&…" in str(exc.value)  # the registry's Location had more in its query: left out


def test_a_cloud_login_goes_to_no_token_realm_but_the_registrys_own(evil):
    from dataclasses import replace

    from dmi_provider.registry.auth import Credentials

    elsewhere = evil.host.replace("localhost", "127.0.0.1")  # another host (the same server, for the record)
    evil.routes = {"/v2/": (401, {"WWW-Authenticate": f'Bearer realm="http://{elsewhere}/token",service="s"'}, b""),
                   "/token": (200, {"Content-Type": "application/json"}, b'{"token": "t"}')}
    cloud = Credentials("oauth2accesstoken", "ya29.cloud-token", own_realm=True)  # GAR's, as targets/google.py
    client = RegistryClient(evil.host, replace(insecure(RetryPolicy(**FAST_RETRY)), credentials=cloud))
    with pytest.raises(AuthError, match="is not on the registry's own host: refusing to send a cloud login") as exc:
        client.head_manifest("a", "v1")
    assert not is_retryable(exc.value)
    assert [p for _, p, _ in evil.seen] == ["/v2/a/manifests/v1"]  # the realm was never asked
    assert "ya29" not in str(exc.value)
    client.close()
    # A plain login (a connection's user and password) follows the realm, as Docker Hub's auth.docker.io needs.
    plain = RegistryClient(evil.host, replace(insecure(RetryPolicy(**FAST_RETRY)), credentials=replace(
        cloud, own_realm=False)))
    evil.seen.clear()
    with pytest.raises(RegistryError):
        plain.head_manifest("a", "v1")  # the token works nowhere: the second 401 fails it
    assert any(p.startswith("/token") for _, p, _ in evil.seen)
    plain.close()


def test_a_manifest_naming_another_repositorys_blob_does_not_get_it_mounted(evil, open_registry, factory, repo_name):
    # Another team's private layer is at the target, and the hints know where. A hostile source serves a
    # manifest naming its digest but not the blob: mounting it from the hint would hand the layer over.
    from dmi_provider.registry.locations import BlobLocations

    private = factory.image(layers=[factory.layer(128 * 1024)])
    theirs = repo_name("private")
    push(rig_client(open_registry), theirs, "v1", private)
    locations = BlobLocations()
    for blob in private.blobs:
        locations.add(open_registry.host, blob.digest, theirs)
    lure = private.manifest  # the same manifest, from a source that holds none of its blobs
    evil.routes = {
        "/v2/evil/app/manifests/": (200, {"Content-Type": json.loads(lure)["mediaType"],
                                          "Docker-Content-Digest": "sha256:" + hashlib.sha256(lure).hexdigest()}, lure),
        "/v2/evil/app/blobs/": (404, {"Content-Type": "application/json"}, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}'),
        "/v2/": (200, {}, b"{}"),
    }
    ours = repo_name("evil")
    copier = Copier(make_pool(evil, open_registry), locations=locations)
    with pytest.raises(NotFound, match="which the source does not serve: not mounting it"):
        copier.copy(ref(evil, "evil/app"), ref(open_registry, ours))
    target = rig_client(open_registry)
    assert all(target.request("HEAD", f"/v2/{ours}/blobs/{b.digest}", target.scope(ours)).status_code == 404
               for b in private.blobs)
    assert not any(m == "GET" and "/blobs/" in p for m, p, _ in evil.seen)  # never read: refused at the HEAD


def test_a_source_that_lies_about_holding_a_blob_still_gets_no_mount_of_another_sources_layer(
        evil, open_registry, factory, repo_name):
    # Review of issue 26 item 1: a hostile registry answers 200 to every blob HEAD. The hint of the private
    # layer says which source its bytes came from (open_registry), so this source's manifest cannot borrow it.
    from dmi_provider.registry.errors import DigestMismatch
    from dmi_provider.registry.locations import BlobLocations

    private = factory.image(layers=[factory.layer(128 * 1024)])
    theirs = repo_name("private")
    push(rig_client(open_registry), theirs, "v1", private)
    locations = BlobLocations()
    for blob in private.blobs:
        locations.add(open_registry.host, blob.digest, theirs, "quay.example")  # as its copy from quay recorded
    lure = private.manifest
    evil.routes = {
        "/v2/evil/app/manifests/": (200, {"Content-Type": json.loads(lure)["mediaType"],
                                          "Docker-Content-Digest": "sha256:" + hashlib.sha256(lure).hexdigest()}, lure),
        "/v2/evil/app/blobs/": (200, {"Content-Type": "application/octet-stream"}, b"not the layer"),  # HEAD: 200
        "/v2/": (200, {}, b"{}"),
    }
    ours = repo_name("evil")
    with pytest.raises(DigestMismatch):
        Copier(make_pool(evil, open_registry), locations=locations).copy(ref(evil, "evil/app"),
                                                                         ref(open_registry, ours))
    target = rig_client(open_registry)
    assert all(target.request("HEAD", f"/v2/{ours}/blobs/{b.digest}", target.scope(ours)).status_code == 404
               for b in private.blobs)  # nothing mounted
    assert locations.holders(open_registry.host, private.blobs[0].digest, "quay.example") == {theirs}
    assert locations.holders(open_registry.host, private.blobs[0].digest, evil.host) == set()


def test_a_trickling_source_fails_its_blob_at_the_stall_timeout_and_holds_no_upload_slot(
        proxy_factory, open_registry, factory, repo_name):
    import contextlib

    from dmi_provider.registry.client import HostSettings
    from dmi_provider.registry.copy import ClientPool
    from dmi_provider.registry.errors import Stalled
    from dmi_provider.registry.locations import BlobLocations
    from dmi_provider.registry.pool import plain_http

    artifact = factory.image(layers=[factory.raw_blob(160 << 10)])
    repo = repo_name("src")
    push(rig_client(open_registry), repo, "v1", artifact)
    source = proxy_factory(open_registry)
    source.bytes_per_second = 32 << 10  # the blob's first bytes after ~5 s: a stall at stall-timeout 2 s

    class Slots(BlobLocations):  # the real hints, their upload slots written down
        taken = 0

        @contextlib.contextmanager
        def uploading(self, registry):  # type: ignore[no-untyped-def]
            Slots.taken += 1
            yield

    retry = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, total=8.0)
    settings = HostSettings(retry=retry)
    pool = ClientPool(plain_http([source.host, open_registry.host], {}, settings), default=settings,
                      use_docker_config=False)
    copier = Copier(pool, locations=Slots(), stall=2.0)
    with pytest.raises(Stalled, match=r"stalled at 0.0 MiB of 0.2 MiB: less than 64 KiB from the source in \d+s "
                                      r"\(stall-timeout\)"):
        copier.copy(ref(source, repo), ref(open_registry, repo_name("dst")))
    assert Slots.taken == 1  # the config blob's: the stalled layer, whose bytes never flowed, held none
    assert source.count("GET", "blob") >= 2  # retried from zero within the budget, then given up


def test_a_target_restart_in_the_middle_of_a_blob_is_survived_by_the_same_copy(
        tmp_path, proxy_factory, open_registry, factory, repo_name):
    # A routine registry restart (here 12 s; the retry budget is 300 s): the blob copy backs off through
    # connection-refused and the "is it there?" check, then copies the blob again, byte-exact.
    import time

    from dmi_provider.registry.client import HostSettings
    from dmi_provider.registry.copy import ClientPool
    from dmi_provider.registry.pool import plain_http
    from tests.rig.registry import Registry

    artifact = factory.image(layers=[factory.raw_blob(24 << 20)])
    repo = repo_name("src")
    push(rig_client(open_registry), repo, "v1", artifact)
    source = proxy_factory(open_registry)
    source.bytes_per_second = 6 << 20  # ~4 s for the blob: time to stop the target in the middle
    target = Registry("restarting", tmp_path / "restarting").start()
    settings = HostSettings(retry=RetryPolicy(attempts=5, base_delay=0.2, max_delay=4.0, total=120.0))
    pool = ClientPool(plain_http([source.host, target.host], {}, settings), default=settings,
                      use_docker_config=False)
    said: list[str] = []
    outcome: dict = {}

    def copy() -> None:
        try:
            outcome["result"] = Copier(pool, progress=said.append).copy(ref(source, repo), ref(target, "dst/app"))
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=copy)
    worker.start()
    deadline = time.monotonic() + 60
    while source.bytes_out < 8 << 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    target.stop()  # in the middle of the blob
    time.sleep(12)
    target.start()  # the same port and storage
    worker.join(180)
    try:
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].target_digest == artifact.digest
        got = rig_client(target).get_manifest("dst/app", "v1")
        assert got.status_code == 200 and got.content == artifact.manifest
        big = artifact.layers[0]
        assert rig_client(target).get_blob("dst/app", big.digest) == big.data
        assert any("retrying from zero" in line for line in said)
    finally:
        target.stop()


def test_a_target_down_as_the_copy_starts_is_waited_out_for_the_retry_budget(
        tmp_path, open_registry, factory, repo_name):
    # Review of issue 26 item 10: the blob HEADs, the mounts and the manifest PUTs wait an outage out too,
    # not only a blob's bytes (the transport alone gives up after its 5 attempts, about 3 s here).

    from dmi_provider.registry.client import HostSettings
    from dmi_provider.registry.copy import ClientPool
    from dmi_provider.registry.pool import plain_http
    from tests.rig.registry import Registry

    artifact = factory.image()
    repo = repo_name("src")
    push(rig_client(open_registry), repo, "v1", artifact)
    target = Registry("down-at-start", tmp_path / "down-at-start").start()
    settings = HostSettings(retry=RetryPolicy(attempts=5, base_delay=0.2, max_delay=4.0, total=120.0))
    pool = ClientPool(plain_http([open_registry.host, target.host], {}, settings), default=settings,
                      use_docker_config=False)
    said: list[str] = []
    copier = Copier(pool, progress=said.append)
    plan = copier.plan(ref(open_registry, repo), ref(target, "dst/app"))
    target.stop()  # between the plan and the writes
    back = threading.Timer(8.0, target.start)
    back.start()
    try:
        result = copier.execute(plan)
        assert result.target_digest == artifact.digest
        assert rig_client(target).get_manifest("dst/app", "v1").content == artifact.manifest
        assert any("no answer" in line and "trying again" in line for line in said)
    finally:
        back.join()
        target.stop()
