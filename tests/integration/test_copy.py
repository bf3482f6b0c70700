"""The registry engine against the real rig: digests kept, thrift counted, faults survived."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.copy import ClientPool, Copier
from dmi_provider.registry.errors import AuthError, DigestMismatch, NotFound, RegistryError
from dmi_provider.registry.reference import parse_reference
from tests.rig.fixtures import BASIC_USER, HUB_USER, rig_client
from tests.rig.images import Index, push
from tests.rig.proxy import Fault
from tests.rig.skopeo import inspect_raw

FAST_RETRY = {"attempts": 4, "base_delay": 0.05, "max_delay": 2.0, "total": 30.0}


def make_pool(*services, creds: dict | None = None) -> ClientPool:
    from dmi_provider.registry.client import HostSettings, RetryPolicy
    from dmi_provider.registry.pool import plain_http

    default = HostSettings(retry=RetryPolicy(**FAST_RETRY))
    logins = {h: HostSettings(Credentials(*c), retry=default.retry) for h, c in (creds or {}).items()}
    return ClientPool(plain_http([s.host for s in services], logins, default), default=default, use_docker_config=False)


def ref(service, repo: str, tag: str = "v1"):
    return parse_reference(f"{service.host}/{repo}:{tag}")


def build(factory, media: str, shape: str):
    if shape == "single":
        return factory.image(layers=[factory.layer(), factory.layer(96 * 1024)], media=media)
    return factory.multiarch(("linux/amd64", "linux/arm64", "linux/arm/v7"), media=media, base=factory.layer())


@pytest.mark.parametrize(("media", "shape"), [("docker", "single"), ("oci", "single"), ("docker", "multi"),
                                               ("oci", "multi")])
@pytest.mark.parametrize("route", ["hub->open", "open->basic", "basic->hub"])
def test_copy_keeps_digests_byte_for_byte(route, media, shape, factory, repo_name, request):
    services = {
        "hub": (request.getfixturevalue("hub_registry"), HUB_USER),
        "open": (request.getfixturevalue("open_registry"), None),
        "basic": (request.getfixturevalue("basic_registry"), BASIC_USER),
    }
    (src, src_creds), (dst, dst_creds) = (services[n] for n in route.split("->"))
    artifact = build(factory, media, shape)
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    push(rig_client(src, src_creds), src_repo, "v1", artifact)
    # Anonymous pull from the hub stand-in (like Docker Hub); credentials elsewhere.
    creds = {s.host: c for s, c in ((src, src_creds if src.name != "hub" else None), (dst, dst_creds)) if c}
    pool = make_pool(src, dst, creds=creds)
    result = Copier(pool).copy(ref(src, src_repo), ref(dst, dst_repo, "mirrored"))
    pool.close()

    assert result.status == "copied"
    assert result.source_digest == result.target_digest == artifact.digest
    assert inspect_raw(f"{dst.host}/{dst_repo}:mirrored", dst_creds) == artifact.manifest
    if isinstance(artifact, Index):
        for child in artifact.children:
            assert inspect_raw(f"{dst.host}/{dst_repo}@{child.digest}", dst_creds) == child.manifest
        assert result.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert result.blobs_copied == len(artifact.blobs)
    assert result.bytes_transferred == sum(b.size for b in artifact.blobs)


def test_second_copy_makes_no_source_gets(hub, hub_registry, open_registry, factory, repo_name):
    artifact = factory.multiarch()
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    push(rig_client(hub_registry, HUB_USER), src_repo, "v1", artifact)
    pool = make_pool(hub, open_registry)
    copier = Copier(pool)
    first = copier.copy(ref(hub, src_repo), ref(open_registry, dst_repo))
    assert first.status == "copied"
    assert hub.count("GET", "manifest", 200) == 3  # the index and its two children
    assert first.ratelimit_limit == 100 and first.ratelimit_remaining == 97

    hub.reset()
    again = Copier(make_pool(hub, open_registry)).copy(ref(hub, src_repo), ref(open_registry, dst_repo))
    assert again.status == "unchanged"
    assert again.target_digest == artifact.digest
    assert hub.count("GET") == 0  # no manifest GET, no blob GET: only HEADs
    assert hub.count("HEAD", "manifest", 200) == 1
    # The registry's challenge is known from the first copy in this process: no 401 round trip, just the token.
    assert again.requests["source"] == {"GET token": 1, "HEAD manifest": 1}
    assert again.ratelimit_remaining == 100  # hub.reset() refilled it; HEADs spend nothing


def test_shared_base_layers_move_once(hub, hub_registry, open_registry, factory, repo_name):
    base = factory.layer(256 * 1024)
    images = [factory.image(layers=[base, factory.layer()]) for _ in range(3)]
    pushed = []
    for image in images:
        repo = repo_name("app")
        push(rig_client(hub_registry, HUB_USER), repo, "v1", image)
        pushed.append(repo)
    pool = make_pool(hub, open_registry)
    copier = Copier(pool)
    results = [copier.copy(ref(hub, repo), ref(open_registry, repo_name("mirror"))) for repo in pushed]
    assert [r.blobs_copied for r in results] == [3, 2, 2]
    assert [r.blobs_mounted for r in results] == [0, 1, 1]  # the base, mounted from the first target repo
    unique = {b.digest for image in images for b in image.blobs}
    assert hub.count("GET", "blob", 200) == len(unique) == 7  # the base layer was read once


def test_same_registry_copy_mounts_everything(open_registry, factory, repo_name):
    artifact = factory.multiarch()
    src_repo = repo_name("src")
    push(rig_client(open_registry), src_repo, "v1", artifact)
    result = Copier(make_pool(open_registry)).copy(ref(open_registry, src_repo), ref(open_registry, repo_name()))
    assert result.blobs_mounted == len(artifact.blobs)
    assert result.blobs_copied == 0 and result.bytes_transferred == 0
    assert "GET blob" not in result.requests["source"]


def test_platform_filter_copies_only_chosen_platforms(hub, hub_registry, open_registry, factory, repo_name):
    artifact = factory.multiarch(("linux/amd64", "linux/arm64", "linux/s390x"), base=factory.layer())
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    push(rig_client(hub_registry, HUB_USER), src_repo, "v1", artifact)
    pool = make_pool(hub, open_registry)
    result = Copier(pool).copy(ref(hub, src_repo), ref(open_registry, dst_repo), platforms=("linux/arm64",))
    arm = artifact.children[1]
    assert result.filtered and result.platforms == ("linux/arm64",)
    assert result.target_digest != artifact.digest
    assert hub.count("GET", "blob", 200) == len(arm.blobs) == 3
    assert hub.count("GET", "manifest", 200) == 2  # the index and the arm64 child only
    target = json.loads(inspect_raw(f"{open_registry.host}/{dst_repo}:v1"))
    assert [m["digest"] for m in target["manifests"]] == [arm.digest]
    assert target["annotations"]["io.dmi.source.digest"] == artifact.digest
    assert inspect_raw(f"{open_registry.host}/{dst_repo}@{arm.digest}") == arm.manifest

    hub.reset()
    again = Copier(make_pool(hub, open_registry)).copy(ref(hub, src_repo), ref(open_registry, dst_repo),
                                                       platforms=("linux/arm64",))
    assert again.status == "unchanged" and hub.count("GET") == 0
    with pytest.raises(RegistryError, match="none of the platforms windows/amd64 is in the index"):
        Copier(make_pool(hub, open_registry)).copy(ref(hub, src_repo), ref(open_registry, repo_name()),
                                                   platforms=("windows/amd64",))


def test_dry_run_writes_nothing(open_registry, basic_registry, factory, repo_name):
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    push(rig_client(open_registry), src_repo, "v1", factory.image())
    pool = make_pool(open_registry, basic_registry, creds={basic_registry.host: BASIC_USER})
    result = Copier(pool).copy(ref(open_registry, src_repo), ref(basic_registry, dst_repo), dry_run=True)
    assert result.status == "dry-run" and result.changed
    assert rig_client(basic_registry, BASIC_USER).get_manifest(dst_repo, "v1").status_code == 404
    assert all(k.startswith("HEAD") or k == "GET token" for k in result.requests["source"])


def test_force_recopies_the_manifest(open_registry, basic_registry, factory, repo_name):
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    push(rig_client(open_registry), src_repo, "v1", factory.image())
    pool = make_pool(open_registry, basic_registry, creds={basic_registry.host: BASIC_USER})
    Copier(pool).copy(ref(open_registry, src_repo), ref(basic_registry, dst_repo))
    forced = Copier(pool).copy(ref(open_registry, src_repo), ref(basic_registry, dst_repo), force=True)
    assert forced.status == "copied" and forced.manifests_copied == 1
    assert forced.blobs_skipped == 2 and forced.blobs_copied == 0  # blobs present are still not re-sent


# -- faults ------------------------------------------------------------------------------------------

def _setup(factory, repo_name, src_registry, creds=None):
    artifact = factory.image(layers=[factory.layer(512 * 1024), factory.layer()])
    src_repo = repo_name("src")
    push(rig_client(src_registry, creds), src_repo, "v1", artifact)
    return artifact, src_repo


def test_429_with_retry_after_and_503s_are_retried(proxy_factory, open_registry, factory, repo_name):
    artifact, src_repo = _setup(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    proxy.inject(Fault(method="GET", path="/manifests/", status=429, headers={"Retry-After": "1"},
                       body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'))
    proxy.inject(Fault(method="GET", path="/blobs/sha256", status=503, times=2))
    dst_repo = repo_name("dst")
    result = Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, dst_repo))
    assert result.target_digest == artifact.digest
    assert proxy.count("GET", "manifest", 429) == 1 and proxy.count("GET", "blob", 503) == 2
    assert inspect_raw(f"{open_registry.host}/{dst_repo}:v1") == artifact.manifest


def test_connection_reset_mid_blob_is_retried_from_zero(proxy_factory, open_registry, factory, repo_name):
    artifact, src_repo = _setup(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    big = artifact.layers[0]
    proxy.inject(Fault(method="GET", path=f"/blobs/{big.digest}", reset_after=100_000))
    dst_repo = repo_name("dst")
    result = Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, dst_repo))
    assert result.target_digest == artifact.digest
    assert proxy.count("GET", "blob") == len(artifact.blobs) + 1
    assert rig_client(open_registry).get_blob(dst_repo, big.digest) == big.data


def test_corrupted_blob_fails_and_the_tag_is_not_written(proxy_factory, open_registry, factory, repo_name):
    artifact, src_repo = _setup(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    big = artifact.layers[0]
    proxy.inject(Fault(method="GET", path=f"/blobs/{big.digest}", corrupt=True, times=None))
    dst_repo = repo_name("dst")
    pool = make_pool(proxy, open_registry)
    with pytest.raises(DigestMismatch, match=f"blob {big.digest}: received"):
        Copier(pool).copy(ref(proxy, src_repo), ref(open_registry, dst_repo))
    assert sum(1 for h in proxy.hits if h.method == "GET" and big.digest in h.path) == 2  # once more, then no more
    target = rig_client(open_registry)
    assert target.get_manifest(dst_repo, "v1").status_code == 404  # no tag
    assert target.request("HEAD", f"/v2/{dst_repo}/blobs/{big.digest}", target.scope(dst_repo)).status_code == 404

    proxy.reset()  # the source heals: a rerun completes
    result = Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, dst_repo))
    assert result.target_digest == artifact.digest
    assert inspect_raw(f"{open_registry.host}/{dst_repo}:v1") == artifact.manifest


def test_expired_token_is_renewed_once(rig_root, open_registry, factory, repo_name):
    from tests.rig.registry import Registry

    registry = Registry("expiring", rig_root / "expiring", auth="token", users=dict([HUB_USER]),
                        token_expires_in=2).start()
    try:
        registry.token_server.claimed_expires_in = 3600  # the client believes its tokens last an hour
        artifact, src_repo = _setup(factory, repo_name, registry, HUB_USER)
        pool = make_pool(registry, open_registry)
        copier = Copier(pool)
        copier.copy(ref(registry, src_repo), ref(open_registry, repo_name("dst")))
        issued = len(registry.token_server.issued)
        import time

        time.sleep(3)  # the cached tokens are dead now, though the client thinks otherwise
        result = copier.copy(ref(registry, src_repo), ref(open_registry, repo_name("dst")), force=True)
        assert result.target_digest == artifact.digest
        assert len(registry.token_server.issued) > issued
    finally:
        registry.stop()


def test_missing_source_fails_fast_with_the_registry_message(proxy_factory, open_registry, repo_name):
    proxy = proxy_factory(open_registry)
    with pytest.raises(NotFound, match="HTTP 404 MANIFEST_UNKNOWN: manifest unknown"):
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, repo_name("nothing")), ref(open_registry, "x/y"))
    assert proxy.count() == 2  # HEAD (404, no body) then GET for the registry's message; no retries


def test_refused_push_names_the_registry_and_no_credentials_leak(hub_registry, open_registry, factory, repo_name):
    _artifact, src_repo = _setup(factory, repo_name, open_registry)
    pool = make_pool(open_registry, hub_registry, creds={hub_registry.host: ("hubuser", "wrong-password-123")})
    with pytest.raises(AuthError) as exc:
        Copier(pool).copy(ref(open_registry, src_repo), ref(hub_registry, repo_name("dst")))
    assert "token service refused as hubuser" in str(exc.value)
    assert "wrong-password-123" not in str(exc.value) and "wrong-password-123" not in repr(pool.get(hub_registry.host))


class _Recorder(BaseHTTPRequestHandler):
    """A blob store on another host: records whether Authorization arrived."""

    seen: list[str | None] = []
    blobs: dict[str, bytes] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        data = type(self).blobs.get(self.path.rsplit("/", 1)[-1], b"")
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_authorization_is_not_sent_across_a_redirect(proxy_factory, basic_registry, open_registry, factory,
                                                     repo_name):
    artifact, src_repo = _setup(factory, repo_name, basic_registry, BASIC_USER)
    server = ThreadingHTTPServer(("localhost", 0), _Recorder)  # "localhost" != "127.0.0.1": another host
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen, _Recorder.blobs = [], {b.digest: b.data for b in artifact.blobs}
    proxy = proxy_factory(basic_registry)
    for blob in artifact.blobs:
        proxy.inject(Fault(method="GET", path=f"/blobs/{blob.digest}", status=307,
                           headers={"Location": f"http://localhost:{server.server_address[1]}/cdn/{blob.digest}"}))
    try:
        pool = make_pool(proxy, open_registry, creds={proxy.host: BASIC_USER})
        result = Copier(pool).copy(ref(proxy, src_repo), ref(open_registry, repo_name("dst")))
    finally:
        server.shutdown()
    assert result.target_digest == artifact.digest
    assert _Recorder.seen == [None] * len(artifact.blobs)


def test_concurrency_per_host_is_bounded(proxy_factory, open_registry, factory, repo_name):
    from dmi_provider.registry.client import HostSettings, RegistryClient
    from dmi_provider.registry.network import Network

    image = factory.image(layers=[factory.raw_blob(2 << 20) for _ in range(8)])
    src = repo_name("src")
    push(rig_client(open_registry), src, "v1", image)
    proxy = proxy_factory(open_registry)
    for slots in (8, 2):
        proxy.reset()
        pool = make_pool(proxy, open_registry)
        pool._clients[proxy.host] = RegistryClient(proxy.host, HostSettings(network=Network(insecure=True),
                                                                            max_transfers=slots))
        result = Copier(pool, workers=8).copy(ref(proxy, src), ref(open_registry, repo_name()))
        assert result.blobs_copied == 9
        if slots == 8:
            assert proxy.max_in_flight["GET blob"] > 2  # the workers do overlap...
    assert proxy.max_in_flight["GET blob"] <= 2  # ...and two transfer slots on that host hold them back


def test_manifests_are_verified_and_capped(proxy_factory, open_registry, factory, repo_name):
    from dmi_provider.registry.errors import ManifestTooLarge

    image = factory.image()
    src = repo_name("src")
    push(rig_client(open_registry), src, "v1", image)
    proxy = proxy_factory(open_registry)
    dst = repo_name("dst")
    proxy.inject(Fault(method="GET", path="/manifests/", corrupt=True))
    with pytest.raises(DigestMismatch, match=f"manifest bytes hash to sha256:[0-9a-f]{{64}}, expected {image.digest}"):
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src), ref(open_registry, dst))
    proxy.inject(Fault(method="GET", path="/manifests/", status=200, body=b"{" + b" " * (5 << 20) + b"}",
                       headers={"Content-Type": image.media_type}))
    with pytest.raises(ManifestTooLarge, match="over the 4194304 byte limit"):
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src), ref(open_registry, dst))
    assert rig_client(open_registry).get_manifest(dst, "v1").status_code == 404


def test_plan_crosses_a_process_boundary_as_json(hub, hub_registry, open_registry, factory, repo_name):
    artifact = factory.multiarch()
    src, dst = repo_name("src"), repo_name("dst")
    push(rig_client(hub_registry, HUB_USER), src, "v1", artifact)
    from dmi_provider.registry.copy import Plan

    plan = Copier(make_pool(hub, open_registry)).plan(ref(hub, src), ref(open_registry, dst))
    assert plan.changed and len(plan.manifests) == 3 and len(plan.blobs) == len(artifact.blobs)
    wire = json.loads(json.dumps(plan.to_dict()))
    hub.reset()
    result = Copier(make_pool(hub, open_registry)).execute(Plan.from_dict(wire))  # another "task"
    assert result.target_digest == artifact.digest
    assert hub.count("GET", "manifest") == 0  # the manifests came with the plan
    assert result.requests["source"]["GET manifest"] == 3  # ...and the plan's requests are counted in
    assert inspect_raw(f"{open_registry.host}/{dst}:v1") == artifact.manifest

    wire["manifests"][0]["raw"] = wire["manifests"][1]["raw"]
    with pytest.raises(DigestMismatch, match="changed on its way"):
        Plan.from_dict(wire)


@pytest.mark.parametrize("status", [500, 503])
def test_one_retry_level_per_blob(proxy_factory, open_registry, factory, repo_name, caplog, status):
    artifact, src_repo = _setup(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    big = artifact.layers[0]
    proxy.inject(Fault(method="GET", path=f"/blobs/{big.digest}", status=status, times=None))
    with caplog.at_level(logging.INFO, logger="dmi_provider.registry.copy"), \
            pytest.raises(RegistryError, match=f"HTTP {status}") as exc:
        Copier(make_pool(proxy, open_registry)).copy(ref(proxy, src_repo), ref(open_registry, repo_name("dst")))
    assert exc.value.retryable  # Airflow may try the task again later
    tries = 1 + sum("retrying from zero" in r.getMessage() for r in caplog.records)
    # The blob copy is the only retry level: one GET per try of it, not attempts x attempts (the GET used to
    # retry inside). A 500 is tried the policy's count of times; a 503 (a gateway in front of a registry that
    # is restarting) for the policy's whole time, so more often, but still once per try.
    assert proxy.count("GET", "blob", status) == tries
    if status == 500:
        assert tries == FAST_RETRY["attempts"]
    else:
        assert tries > FAST_RETRY["attempts"]


def test_a_retry_after_slows_every_thread_talking_to_that_host(proxy_factory, open_registry, factory, repo_name,
                                                               monkeypatch):
    from dmi_provider.registry.client import Call, RegistryClient, RetryPolicy, pull_scope
    from dmi_provider.registry.settings import insecure

    artifact, src_repo = _setup(factory, repo_name, open_registry)
    proxy = proxy_factory(open_registry)
    proxy.inject(Fault(method="GET", path="/manifests/", status=429, headers={"Retry-After": "2"},
                       body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'))
    client = RegistryClient(proxy.host, insecure(RetryPolicy(**FAST_RETRY)))
    slept: list[float] = []
    monkeypatch.setattr("dmi_provider.registry.transport.time.sleep", slept.append)
    with pytest.raises(RegistryError, match="TOOMANYREQUESTS") as exc:
        client.send(Call("GET", f"/v2/{src_repo}/manifests/v1", pull_scope(src_repo), retry=False))
    assert exc.value.retry_after == 2.0
    other = threading.Thread(target=client.blob_exists, args=(src_repo, artifact.layers[1].digest))
    other.start()
    other.join(30)
    assert len(slept) == 1 and 1.0 < slept[0] <= 2.0  # the other thread waited its turn before asking
    assert proxy.count("HEAD", "blob", 200) == 1
    client.close()


def test_copies_side_by_side_read_a_shared_blob_once(proxy_factory, open_registry, factory, repo_name, rig_root):
    # Two sections of `dmi sync` (two copiers, no shared cache) need the same base layer at the same registry.
    from tests.rig.registry import Registry

    target = Registry("side-by-side", rig_root / "side-by-side").start()
    try:
        base = factory.layer(1024 * 1024)
        images = [factory.image(layers=[base, factory.layer()]) for _ in range(3)]
        repos = [repo_name("src") for _ in images]
        for repo, image in zip(repos, images, strict=True):
            push(rig_client(open_registry), repo, "v1", image)
        source = proxy_factory(open_registry)
        source.latency = 0.2  # the copies overlap
        results: list = []

        def copy(repo: str) -> None:
            copier = Copier(make_pool(source, target))  # its own pool and memory-only locations
            results.append(copier.copy(ref(source, repo), ref(target, f"mirror/{repo}")))

        threads = [threading.Thread(target=copy, args=(repo,)) for repo in repos]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status for r in results) == ["copied"] * 3
        assert sum(1 for h in source.hits if h.method == "GET" and base.digest in h.path) == 1
        assert sum(r.blobs_mounted for r in results) == 2  # the others mounted what the first wrote
        for repo, image in zip(repos, images, strict=True):
            assert inspect_raw(f"{target.host}/mirror/{repo}:v1") == image.manifest
    finally:
        target.stop()


def test_a_cold_copy_into_an_empty_repository_sends_two_requests_per_blob(proxy_factory, open_registry, factory,
                                                                          repo_name):
    artifact = factory.image(layers=[factory.layer(), factory.layer(), factory.layer()])
    src_repo = repo_name("src")
    push(rig_client(open_registry), src_repo, "v1", artifact)
    target = proxy_factory(open_registry)
    result = Copier(make_pool(open_registry, target)).copy(ref(open_registry, src_repo),
                                                            ref(target, repo_name("fresh")))
    blobs = len(artifact.blobs)
    assert result.blobs_copied == blobs
    assert target.count("HEAD", "blob") == 0  # the repository had no tags: nothing to ask about
    assert target.count("POST", "upload") == target.count("PUT", "upload") == blobs
    assert target.count("GET", "other") + target.count("GET", "tags") <= 1  # the one tag-list question
    upload_requests = target.count("POST", "upload") + target.count("PUT", "upload")
    assert upload_requests <= 2 * blobs


def test_a_refused_mount_s_upload_is_used_not_cancelled(proxy_factory, open_registry, factory, repo_name):
    # A stale hint: the blob is no longer where the cache says. The upload the refused mount opened carries it.
    from dmi_provider.registry.locations import BlobLocations

    artifact = factory.image(layers=[factory.layer()])
    src_repo = repo_name("src")
    push(rig_client(open_registry), src_repo, "v1", artifact)
    target = proxy_factory(open_registry)
    locations = BlobLocations()
    for blob in artifact.blobs:
        locations.add(target.host, blob.digest, "nowhere/gone")
    copier = Copier(make_pool(open_registry, target), locations=locations)
    result = copier.copy(ref(open_registry, src_repo), ref(target, repo_name("dst")))
    assert result.blobs_copied == len(artifact.blobs) and result.blobs_mounted == 0
    assert target.count("POST", "upload") == len(artifact.blobs)  # the mount POSTs, nothing more
    assert target.count("DELETE", "upload") == 0
    assert all(locations.holders(target.host, b.digest) == {result.target.split("/", 1)[1].split(":")[0]}
               for b in artifact.blobs)


def test_a_blob_written_just_before_the_lease_is_taken_is_mounted_not_read_again(
        proxy_factory, open_registry, factory, repo_name):
    # Two workers of a fleet: the other one finished the blob and let go of its lease between this copy's
    # look at the hints and its take of the lease. Looking again once the lease is held finds it.
    import contextlib

    from dmi_provider.registry.locations import BlobLocations

    artifact = factory.image(layers=[factory.layer(), factory.layer(96 * 1024)])
    src_repo, other_repo = repo_name("src"), repo_name("other")
    push(rig_client(open_registry), src_repo, "v1", artifact)
    push(rig_client(open_registry), other_repo, "v1", artifact)  # what the other worker wrote
    source, target = proxy_factory(open_registry), proxy_factory(open_registry)

    class LateHints(BlobLocations):
        @contextlib.contextmanager
        def writing(self, registry, digest, repository):
            self.add(registry, digest, other_repo)  # recorded by the other worker as it let go
            yield False

    copier = Copier(make_pool(source, target), locations=LateHints())
    result = copier.copy(ref(source, src_repo), ref(target, repo_name("dst")))
    assert result.blobs_mounted == len(artifact.blobs) and result.blobs_copied == 0
    assert source.count("GET", "blob") == 0  # no blob read from the source a second time
