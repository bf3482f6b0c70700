"""The rig's services really start, serve the real protocol, and stop."""

from __future__ import annotations

import base64
import json
import time

import docker
import httpx
import pytest

from tests.rig.client import MANIFEST_TYPES
from tests.rig.fixtures import BASIC_USER, HUB_USER, rig_client
from tests.rig.images import Image, Index, push
from tests.rig.process import port_open
from tests.rig.proxy import Fault
from tests.rig.registry import Registry
from tests.rig.skopeo import inspect_raw
from tests.rig.token_server import REGISTRY_LEEWAY

ARTIFACTS = [
    ("docker", "single"),
    ("oci", "single"),
    ("docker", "multi"),
    ("oci", "multi"),
]


def _build(factory, media: str, shape: str) -> Image | Index:
    if shape == "single":
        return factory.image(media=media)
    return factory.multiarch(media=media, base=factory.layer(32 * 1024))


@pytest.mark.parametrize(("media", "shape"), ARTIFACTS)
@pytest.mark.parametrize("kind", ["open", "basic", "hub"])
def test_push_and_read_back_through_each_registry(kind, media, shape, factory, repo_name, request):
    registry: Registry = request.getfixturevalue(f"{kind}_registry")
    creds = {"open": None, "basic": BASIC_USER, "hub": HUB_USER}[kind]
    artifact = _build(factory, media, shape)
    repo = repo_name()
    client = rig_client(registry, creds)
    assert push(client, repo, "v1", artifact) == artifact.digest

    raw = inspect_raw(f"{registry.host}/{repo}:v1", creds)
    assert raw == artifact.manifest
    got = client.get_manifest(repo, "v1")
    assert got.headers["docker-content-digest"] == artifact.digest
    assert got.headers["content-type"] == artifact.media_type
    if isinstance(artifact, Index):
        for child in artifact.children:
            assert inspect_raw(f"{registry.host}/{repo}@{child.digest}", creds) == child.manifest
    layer = artifact.blobs[-1]
    assert client.get_blob(repo, layer.digest) == layer.data


def test_basic_registry_refuses_anonymous_and_wrong_password(basic_registry):
    r = httpx.get(f"{basic_registry.url}/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic ")
    assert httpx.get(f"{basic_registry.url}/v2/", auth=("mirror", "wrong")).status_code == 401
    assert httpx.get(f"{basic_registry.url}/v2/", auth=BASIC_USER).status_code == 200


def test_token_registry_behaves_like_docker_hub(hub_registry, factory, repo_name):
    repo = repo_name()
    push(rig_client(hub_registry, HUB_USER), repo, "v1", factory.image())

    challenge = httpx.get(f"{hub_registry.url}/v2/{repo}/manifests/v1").headers["www-authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert f'service="{hub_registry.token_server.service}"' in challenge
    assert f'scope="repository:{repo}:pull"' in challenge

    anonymous = rig_client(hub_registry)
    assert anonymous.get_manifest(repo, "v1").status_code == 200  # anonymous pull tokens
    with pytest.raises(httpx.HTTPStatusError) as denied:
        anonymous.put_blob(repo, b"anonymous push")
    assert denied.value.response.status_code == 401
    issued = hub_registry.token_server.issued
    assert any(t["user"] is None and t["access"][0]["actions"] == ["pull"] for t in issued if t["access"])

    realm = challenge.split('"')[1]
    bad = httpx.get(realm, params={"service": hub_registry.token_server.service}, auth=("hubuser", "wrong"))
    assert bad.status_code == 401


def test_hub_proxy_sends_ratelimit_headers_and_counts(hub, hub_registry, factory, repo_name):
    repo = repo_name()
    artifact = factory.image()
    push(rig_client(hub_registry, HUB_USER), repo, "v1", artifact)
    client = rig_client(hub)
    head = client.request("HEAD", f"/v2/{repo}/manifests/v1", client.scope(repo),
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert head.status_code == 200
    assert head.headers["ratelimit-limit"] == "100;w=21600"
    assert head.headers["ratelimit-remaining"] == "100;w=21600"  # HEAD is free
    got = client.get_manifest(repo, "v1")
    assert got.content == artifact.manifest
    assert got.headers["ratelimit-remaining"] == "99;w=21600"
    assert hub.count("GET", "manifest") == 1  # the token was cached after the HEAD's challenge
    assert hub.count("HEAD", "manifest", status=200) == 1
    assert hub.count("HEAD", "manifest", status=401) == 1

    hub.remaining = 0
    refused = client.get_manifest(repo, "v1")
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_proxy_injects_faults(proxy_factory, open_registry, factory, repo_name):
    repo = repo_name()
    artifact = factory.image()
    push(rig_client(open_registry), repo, "v1", artifact)
    proxy = proxy_factory(open_registry)
    client = rig_client(proxy)

    proxy.inject(Fault(method="GET", path="/manifests/", status=503, headers={"Retry-After": "0"}))
    assert client.get_manifest(repo, "v1").status_code == 503
    assert client.get_manifest(repo, "v1").status_code == 200

    layer = artifact.layers[0]
    proxy.inject(Fault(method="GET", path="/blobs/sha256", corrupt=True))
    assert client.get_blob(repo, layer.digest) != layer.data
    assert client.get_blob(repo, layer.digest) == layer.data

    proxy.inject(Fault(method="GET", path="/blobs/sha256", reset_after=1000))
    with pytest.raises(httpx.HTTPError):
        client.get_blob(repo, layer.digest)
    assert client.get_blob(repo, layer.digest) == layer.data
    assert proxy.count("GET", "blob") == 4


def test_uploads_pass_through_the_proxy(proxy_factory, open_registry, factory, repo_name):
    proxy = proxy_factory(open_registry)
    artifact = factory.multiarch()
    repo = repo_name()
    push(rig_client(proxy), repo, "v1", artifact)
    assert inspect_raw(f"{open_registry.host}/{repo}:v1") == artifact.manifest
    assert proxy.count("PUT", "upload") == len(artifact.blobs)
    assert proxy.count("PUT", "manifest") == 3


def test_ecr_stand_in(ecr, factory, repo_name):
    client = ecr.boto3_client()
    repo = repo_name("proxyv2")
    created = client.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE",
                                       imageScanningConfiguration={"scanOnPush": True})
    assert created["repository"]["repositoryUri"].endswith(f"/{repo}")
    described = client.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE"

    auth = client.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    artifact = factory.image()
    push(rig_client(ecr.registry, (user, password)), repo, "1.0", artifact)
    assert inspect_raw(f"{ecr.registry.host}/{repo}:1.0", (user, password)) == artifact.manifest


@pytest.mark.slow
def test_dockerd_pulls_tags_and_pushes(dockerd, open_registry, factory, repo_name):
    api = docker.DockerClient(base_url=dockerd.base_url, timeout=120)
    assert api.ping()
    artifact = factory.image(layers=[factory.layer(), factory.layer()])
    repo = repo_name()
    push(rig_client(open_registry), repo, "v1", artifact)

    source = f"{open_registry.host}/{repo}"
    image = api.images.pull(source, tag="v1")
    assert image.id == artifact.config.digest  # dockerd's image id is the config digest
    target = f"{open_registry.host}/{repo_name()}"
    assert image.tag(target, "copied")
    events = list(api.images.push(target, tag="copied", stream=True, decode=True))
    assert not [e for e in events if "error" in e], events
    pushed = [e["aux"]["Digest"] for e in events if "aux" in e]
    assert pushed and inspect_raw(f"{target}:copied") == rig_client(open_registry).get_manifest(
        target.split("/", 1)[1], "copied").content
    api.images.remove(image.id, force=True)
    api.close()


def test_token_expiry_is_enforced(rig_root, factory, repo_name):
    registry = Registry("short", rig_root / "short-token", auth="token", users=dict([HUB_USER]),
                        token_expires_in=2).start()
    try:
        client = rig_client(registry, HUB_USER)
        repo = repo_name()
        push(client, repo, "v1", factory.image())
        token = client._tokens[client.scope(repo, push=True)]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["exp"] - claims["iat"] == 2 - REGISTRY_LEEWAY
        url = f"{registry.url}/v2/{repo}/manifests/v1"
        headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_TYPES}
        assert httpx.get(url, headers=headers).status_code == 200
        time.sleep(3.5)  # past expires_in: the registry must refuse the same token now
        assert httpx.get(url, headers=headers).status_code == 401
    finally:
        registry.stop()


def test_services_stop(rig_root):
    registry = Registry("stopping", rig_root / "stopping").start()
    port = registry.port
    assert port_open(port)
    registry.stop()
    assert not port_open(port)
