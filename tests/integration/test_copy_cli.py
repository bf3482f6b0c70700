"""`dmi copy` as users run it: exit codes, progress, JSON, credentials from where users keep them,
and flat memory on a large layer."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.client import HostSettings
from tests.rig.cli import dmi
from tests.rig.fixtures import BASIC_USER, HUB_USER, rig_client
from tests.rig.images import push
from tests.rig.skopeo import inspect_raw


def test_copy_cli_json_and_progress(open_registry, basic_registry, factory, repo_name):
    artifact = factory.multiarch()
    src, dst = repo_name("src"), repo_name("dst")
    push(rig_client(open_registry), src, "1.0", artifact)
    done = dmi("copy", "--insecure", open_registry.host, "--insecure", basic_registry.host,
               "--dst-creds", ":".join(BASIC_USER), "--json",
               f"{open_registry.host}/{src}:1.0", f"{basic_registry.host}/{dst}:1.0")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "copied" and result["target_digest"] == artifact.digest
    assert result["blobs_copied"] == len(artifact.blobs)
    assert "copying " + artifact.digest in done.stderr
    assert done.stderr.count(" copied ") >= len(artifact.blobs)  # one progress line per blob, with MiB/s
    assert "MiB/s" in done.stderr
    assert BASIC_USER[1] not in done.stderr + done.stdout
    assert "warning: a password given in --dst-creds is visible to every user of this machine (ps)" in done.stderr

    again = dmi("copy", "--insecure", open_registry.host, "--insecure", basic_registry.host,
                "--dst-creds", BASIC_USER[0], f"{open_registry.host}/{src}:1.0", f"{basic_registry.host}/{dst}:1.0",
                env={"DMI_DST_PASSWORD": BASIC_USER[1]})
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"unchanged: {open_registry.host}/{src}:1.0 -> ")
    assert "warning" not in again.stderr  # USER alone, the password from the environment


def test_copy_cli_failures(open_registry, repo_name):
    missing = dmi("copy", "--insecure", open_registry.host, f"{open_registry.host}/{repo_name()}:1",
                  f"{open_registry.host}/{repo_name()}:1")
    assert missing.returncode == 1
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("dmi copy: failed: GET http://") and "HTTP 404 MANIFEST_UNKNOWN" in last

    bad = dmi("copy", "Not/Valid", "x/y")
    assert bad.returncode == 2 and "is not a repository path" in bad.stderr
    nopass = dmi("copy", "--dst-creds", "someone", "a", "b")
    assert nopass.returncode == 2 and "$DMI_DST_PASSWORD" in nopass.stderr

    # Without --insecure, a plain-HTTP registry is not spoken to over HTTP.
    tls = dmi("copy", f"{open_registry.host}/{repo_name()}:1", f"{open_registry.host}/{repo_name()}:1")
    assert tls.returncode == 1
    assert tls.stderr == (f"dmi copy: failed: {open_registry.host}: TLS handshake with {open_registry.host} failed "
                          "(WRONG_VERSION_NUMBER); the registry may speak plain HTTP; give it --insecure only if it "
                          "really has no TLS\n")


def test_credentials_from_docker_config_and_helpers(tmp_path, open_registry, basic_registry, factory, repo_name):
    src = repo_name("src")
    push(rig_client(open_registry), src, "1.0", factory.image())
    auth = base64.b64encode(":".join(BASIC_USER).encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    args = ["copy", "--insecure", open_registry.host, "--insecure", basic_registry.host,
            f"{open_registry.host}/{src}:1.0"]
    done = dmi(*args, f"{basic_registry.host}/{repo_name()}:1.0", env={"DOCKER_CONFIG": str(tmp_path)})
    assert done.returncode == 0, done.stderr

    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-dmitest"
    helper.write_text("#!/bin/sh\nread server\n"
                      f"echo '{{\"ServerURL\": \"'$server'\", \"Username\": \"{BASIC_USER[0]}\", "
                      f"\"Secret\": \"{BASIC_USER[1]}\"}}'\n")
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.host: "dmitest"}}))
    done = dmi(*args, f"{basic_registry.host}/{repo_name()}:1.0",
               env={"DOCKER_CONFIG": str(tmp_path), "PATH": f"{helper_dir}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr

    (tmp_path / "config.json").write_text("{}")
    refused = dmi(*args, f"{basic_registry.host}/{repo_name()}:1.0", env={"DOCKER_CONFIG": str(tmp_path)})
    assert refused.returncode == 1 and "needs credentials (basic auth)" in refused.stderr


def test_memory_stays_flat_on_a_large_layer(open_registry, basic_registry, factory, repo_name):
    size = 256 * 1024 * 1024
    big = factory.raw_blob(size)
    image = factory.image(layers=[big])
    src, dst = repo_name("src"), repo_name("dst")
    push(rig_client(open_registry), src, "big", image)
    config = image.config.data
    del big, image
    done = dmi("copy", "-q", "--json", "--insecure", open_registry.host, "--insecure", basic_registry.host,
               "--dst-creds", ":".join(BASIC_USER), f"{open_registry.host}/{src}:big",
               f"{basic_registry.host}/{dst}:big")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["bytes_transferred"] == size + len(config)
    # VmHWM of the dmi process itself (ru_maxrss would count the pre-exec pages of this big test process).
    assert result["peak_rss_mib"] < 128, f"peak RSS {result['peak_rss_mib']} MiB copying a {size >> 20} MiB layer"
    assert inspect_raw(f"{basic_registry.host}/{dst}:big", BASIC_USER)


# -- TLS: verified by default, and never downgraded by a redirect ---------------------------------------


def test_blob_locations_persist_across_runs(tmp_path, hub, hub_registry, open_registry, factory, repo_name):
    base = factory.layer(200 * 1024)
    first, second = (factory.image(layers=[base, factory.layer()]) for _ in range(2))
    src1, src2 = repo_name("a"), repo_name("b")
    push(rig_client(hub_registry, HUB_USER), src1, "1", first)
    push(rig_client(hub_registry, HUB_USER), src2, "1", second)
    env = {"DMI_CACHE_DIR": str(tmp_path / "cache")}
    flags = ["copy", "--json", "--insecure", hub.host, "--insecure", open_registry.host]
    one = dmi(*flags, f"{hub.host}/{src1}:1", f"{open_registry.host}/{repo_name('m')}:1", env=env)
    assert json.loads(one.stdout)["blobs_copied"] == 3
    hub.reset()
    two = json.loads(dmi(*flags, f"{hub.host}/{src2}:1", f"{open_registry.host}/{repo_name('m')}:1", env=env).stdout)
    assert (two["blobs_copied"], two["blobs_mounted"]) == (2, 1)  # the base: mounted, not read again
    assert hub.count("GET", "blob", 200) == 2
    assert (tmp_path / "cache" / "blob-locations.sqlite").exists()

    hub.reset()  # --no-cache: a fresh process knows nothing, so the base is read again
    three = json.loads(dmi(*flags, "--no-cache", f"{hub.host}/{src2}:1", f"{open_registry.host}/{repo_name('m')}:1",
                           env=env).stdout)
    assert (three["blobs_copied"], three["blobs_mounted"]) == (3, 0)


def test_a_stale_location_hint_is_forgotten(tmp_path, open_registry, basic_registry, factory, repo_name):
    from dmi_provider.registry.copy import ClientPool, Copier
    from dmi_provider.registry.locations import BlobLocations
    from dmi_provider.registry.pool import plain_http
    from dmi_provider.registry.reference import parse_reference

    image = factory.image()
    src = repo_name("src")
    push(rig_client(open_registry), src, "1", image)
    locations = BlobLocations(tmp_path / "hints.sqlite")
    for blob in image.blobs:
        locations.add(basic_registry.host, blob.digest, "nowhere/repo")  # wrong: nothing is there
    logins = {basic_registry.host: HostSettings(Credentials(*BASIC_USER))}
    pool = ClientPool(plain_http([open_registry.host, basic_registry.host], logins), use_docker_config=False)
    result = Copier(pool, locations=locations).copy(parse_reference(f"{open_registry.host}/{src}:1"),
                                                    parse_reference(f"{basic_registry.host}/{repo_name()}:1"))
    assert (result.blobs_copied, result.blobs_mounted) == (2, 0)
    assert all("nowhere/repo" not in locations.holders(basic_registry.host, b.digest) for b in image.blobs)
    locations.close()
    (tmp_path / "a-file").write_text("")
    broken = BlobLocations(tmp_path / "a-file" / "hints.sqlite")  # an unusable path: memory only, no failure
    broken.add("r", "d", "x")
    assert broken.holders("r", "d") == {"x"}


@pytest.mark.slow
def test_copy_cli_through_a_docker_daemon(dockerd, open_registry, basic_registry, hub_registry, factory, repo_name,
                                          tmp_path):
    """`dmi copy --engine docker`: the same engine classes as the DAG's engine = docker, without Airflow."""
    src, dst = repo_name("src"), repo_name("dst")
    push(rig_client(open_registry), src, "1.0", factory.image())
    args = ("copy", "--engine", "docker", "--docker-url", dockerd.base_url, "--insecure", open_registry.host,
            "--insecure", basic_registry.host, "--dst-creds", BASIC_USER[0], "--json",
            f"{open_registry.host}/{src}:1.0", f"{basic_registry.host}/{dst}:1.0")
    done = dmi(*args, env={"DMI_DST_PASSWORD": BASIC_USER[1], "AIRFLOW_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "copied" and "docker push" in done.stderr
    stored = inspect_raw(f"{basic_registry.host}/{dst}:1.0", BASIC_USER)
    assert result["target_digest"] == "sha256:" + hashlib.sha256(stored).hexdigest()  # what the daemon pushed
    # The Hub stand-in lets anyone read (our HEADs pass) and only its users push: the daemon's refusal is
    # one line, exit 1, no traceback.
    refused = dmi("copy", "--engine", "docker", "--docker-url", dockerd.base_url, "--insecure", open_registry.host,
                  "--insecure", hub_registry.host, f"{open_registry.host}/{src}:1.0", f"{hub_registry.host}/{dst}:1.0",
                  env={"AIRFLOW_HOME": str(tmp_path)})
    assert refused.returncode == 1, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"dmi copy: failed: push {hub_registry.host}/{dst}:1.0: ")
    assert "Traceback" not in refused.stderr
