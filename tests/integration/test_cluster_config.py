"""`dmi cluster-config --format containerd` proven with Debian's containerd: `ctr` pulls images by the names users
write (`docker.io/istio/proxyv2:1.7.0`) through the generated hosts directory, and gets them from the mirror.

A registry stands in for Docker Hub: DMI mirrors from it, and the generated files send containerd's fallback
there (`--upstream`), so nothing here needs DNS or the internet, and a request that missed the mirror shows in
the stand-in's access log."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.cli import dmi
from tests.rig.client import RigClient
from tests.rig.containerd import Containerd
from tests.rig.images import ImageFactory, push
from tests.rig.registry import Registry

SECTIONS = """\
    [DEFAULT]
    refresh = 1d
    target = registry
    target-registry = {mirror}
    insecure-registries = {mirror}

    [istio/proxyv2]
    image = proxyv2
    source-repository = istio
    tag = 1.7.0
    project = istio

    [alpine]
    image = alpine
    source-repository = library
    tag = 3.20
    project = library

    # A rename containerd can express: the upstream path under a prefix.
    [istio/pilot]
    image = pilot
    source-repository = istio
    tag = 1.7.0
    target-repository = mirror/istio/pilot
"""


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    runtime = Containerd.start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The Docker Hub stand-in with four images, a mirror, and DMI's mirror run of config.ini into it."""
    root = tmp_path_factory.mktemp("cluster")
    hub = Registry("hub", root / "hub", access_log=True).start()
    mirror = Registry("mirror", root / "mirror", access_log=True).start()
    factory, seeder = ImageFactory(seed=28), RigClient(hub.url)
    digests = {
        "istio/proxyv2:1.7.0": push(seeder, "istio/proxyv2", "1.7.0", factory.image()),
        "library/alpine:3.20": push(seeder, "library/alpine", "3.20", factory.multiarch(("linux/amd64",
                                                                                         "linux/arm64"))),
        "istio/pilot:1.7.0": push(seeder, "istio/pilot", "1.7.0", factory.image()),
        "library/nginx:1": push(seeder, "library/nginx", "1", factory.image()),  # not in config.ini
    }
    # config.ini names docker.io, as users write it; the mirror run reads the same sections from the stand-in.
    config = root / "config.ini"
    config.write_text(textwrap.dedent(SECTIONS).format(mirror=mirror.host))
    run = root / "run.ini"
    run.write_text(textwrap.dedent(SECTIONS).format(mirror=mirror.host).replace(
        f"insecure-registries = {mirror.host}\n",
        f"insecure-registries = {mirror.host}, {hub.host}\nsource-registry = {hub.host}\n", 1))
    done = dmi("sync", str(run), "--no-history")
    assert done.returncode == 0, done.stderr
    try:
        yield {"hub": hub, "mirror": mirror, "config": config, "digests": digests, "root": root}
    finally:
        hub.stop()
        mirror.stop()


def _hosts(world: dict, name: str, *flags: str) -> Path:
    out = world["root"] / name
    done = dmi("cluster-config", str(world["config"]), "--format", "containerd", "--out", str(out),
               "--upstream", f"docker.io={world['hub'].url}", *flags)
    assert done.returncode == 0, done.stderr
    return out


def test_containerd_pulls_what_dmi_mirrored_from_the_mirror_by_the_upstream_names(containerd, world):
    hosts = _hosts(world, "hosts")
    mirror, hub = world["mirror"], world["hub"]
    hub_seen = len(hub.requests())
    for name in ("istio/proxyv2:1.7.0", "library/alpine:3.20", "istio/pilot:1.7.0"):
        mirror_seen = len(mirror.requests())
        pull = containerd.pull(f"docker.io/{name}", hosts)
        assert pull.returncode == 0, pull.output[-3000:]
        # Every request went to the mirror, asked on docker.io's behalf; none to docker.io or its stand-in.
        assert pull.urls() and all(u.startswith(f"{mirror.url}/v2/") and "ns=docker.io" in u for u in pull.urls())
        assert f'msg=resolved desc.digest="{world["digests"][name]}" host="{mirror.host}"' in pull.output
        served = mirror.requests()[mirror_seen:]
        repository = name.split(":")[0]
        path = f"mirror/{repository}" if repository == "istio/pilot" else repository  # override_path's prefix
        assert any(r.startswith(f"GET /v2/{path}/manifests/sha256:") for r in served), served
        assert any(r.startswith(f"GET /v2/{path}/blobs/sha256:") for r in served), served
        assert containerd.digest(f"docker.io/{name}") == world["digests"][name]
    assert hub.requests()[hub_seen:] == []
    assert "registry-1.docker.io" not in (hosts / "docker.io" / "hosts.toml").read_text()  # --upstream's place


def test_an_image_dmi_does_not_mirror_falls_back_to_the_upstream_or_fails_without_fallback(containerd, world):
    hub = world["hub"]
    hub_seen = len(hub.requests())
    pull = containerd.pull("docker.io/library/nginx:1", _hosts(world, "fallback"))
    assert pull.returncode == 0, pull.output[-3000:]
    assert f'host="{world["mirror"].host}" ' in pull.output  # the mirror was asked first
    assert "404 Not Found" in pull.output
    assert any(r.startswith("GET /v2/library/nginx/manifests/sha256:") for r in hub.requests()[hub_seen:])
    assert containerd.digest("docker.io/library/nginx:1") == world["digests"]["library/nginx:1"]

    containerd.ctr("images", "rm", "docker.io/library/nginx:1")
    hub_seen = len(hub.requests())
    pull = containerd.pull("docker.io/library/nginx:1", _hosts(world, "mirror-only", "--no-fallback"))
    assert pull.returncode != 0
    assert "not found" in pull.output
    assert hub.requests()[hub_seen:] == []
    assert pull.urls() and all(u.startswith(world["mirror"].url) for u in pull.urls())


def _crio_pull(world: dict, conf: Path, name: str) -> subprocess.CompletedProcess[str]:
    """A pull as CRI-O makes it: containers/image (here through Debian's skopeo) reading the generated
    registries.conf, the upstream name as pods write it."""
    out = world["root"] / f"pulled-{name.replace('/', '_').replace(':', '_')}-{conf.parent.parent.name}"
    return subprocess.run(["skopeo", "--registries-conf", str(conf), "--debug", "copy", "--retry-times", "0",
                           f"docker://{name}", f"dir:{out}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(world["root"])})


def test_the_cri_o_drop_in_sends_containers_image_pulls_to_the_mirror(world):
    """The library CRI-O pulls with reads the drop-in: mirrored repositories come from the mirror (renames of
    any shape), an unmirrored one from the upstream it names."""
    mirror, hub = world["mirror"], world["hub"]
    out = world["root"] / "crio"
    done = dmi("cluster-config", str(world["config"]), "--format", "cri-o", "--out", str(out),
               "--upstream", f"docker.io={hub.url}")
    assert done.returncode == 0, done.stderr
    conf = out / "registries.conf.d" / "50-dmi-mirror.conf"
    hub_seen = len(hub.requests())
    for name in ("istio/proxyv2:1.7.0", "istio/pilot:1.7.0"):
        mirror_seen = len(mirror.requests())
        pull = _crio_pull(world, conf, f"docker.io/{name}")
        assert pull.returncode == 0, pull.stderr[-3000:]
        assert f'Loading registries configuration \\"{conf}\\"' in pull.stderr
        assert "docker.io/v2" not in pull.stderr and "registry-1" not in pull.stderr
        path = "mirror/istio/pilot" if "pilot" in name else "istio/proxyv2"
        served = mirror.requests()[mirror_seen:]
        assert any(r.startswith(f"GET /v2/{path}/manifests/") for r in served), served
        assert any(r.startswith(f"GET /v2/{path}/blobs/sha256:") for r in served), served
    assert hub.requests()[hub_seen:] == []  # nothing of the mirrored images from upstream
    # library/nginx is in no section: containers/image pulls it from docker.io as before (not tried here:
    # no network), and the drop-in holds no entry for it.
    assert "library/nginx" not in conf.read_text()
