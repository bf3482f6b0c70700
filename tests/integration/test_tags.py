"""Choosing tags: the version rule, the filters, newest N, the cap, pins; the tag list read from a real
registry page by page; and a section with filters mirrored through the DAG, one mapped instance per tag."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from dmi_provider.config import parse_config
from dmi_provider.errors import is_retryable
from dmi_provider.registry.copy import Copier
from dmi_provider.registry.errors import PinMoved
from dmi_provider.tracking.store import TrackingStore
from tests.integration.test_copy import make_pool, ref
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push

REDIS = ([f"6.2.{n}" for n in range(5)] + [f"7.0.{n}" for n in range(10)] + [f"7.2.{n}" for n in range(10)]
         + ["7.4.0", "7.4.1", "7.4.2-rc1", "7.4.1-alpine", "v7", "8.0.0", "8.0.1", "latest", "alpine", "bookworm",
            "2026-11-01", "2025-10-01", "nightly_build", "7.x"])
assert len(REDIS) == 39  # and "7.2.9-extra" pushed below makes 40


# -- against real registries ------------------------------------------------------------------------------
def write_config(tmp_path, source: str, target: str, section: str):
    """A config mirroring from `source` to the registry `target` (both plain HTTP), with one section."""
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        source-registry = {source}
        target = registry
        target-registry = {target}
        insecure-registries = {source} {target}
    """) + textwrap.dedent(section))
    return config


def push_tags(registry, creds, repo: str, tags: list[str], factory) -> str:
    client = rig_client(registry, creds)
    image = factory.image()
    push(client, repo, tags[0], image)
    for tag in tags[1:]:
        client.put_manifest(repo, tag, image.manifest, image.media_type)
    return image.digest


def test_the_tag_list_is_read_page_by_page(proxy_factory, open_registry, factory, repo_name):
    from dmi_provider.registry.client import RegistryClient
    from dmi_provider.registry.settings import insecure

    repo = repo_name("redis")
    push_tags(open_registry, None, repo, REDIS, factory)
    proxy = proxy_factory(open_registry)
    proxy.tag_page = True  # pages as Docker Hub does (the registry here sends every tag at once)
    client = RegistryClient(proxy.host, insecure())
    assert sorted(client.list_tags(repo, page=7)) == sorted(REDIS)
    assert proxy.count("GET", "other", 200) == 6  # 39 tags, 7 a page: the Link header leads on
    assert proxy.count("GET", "manifest") == 0  # a listing is no pull
    client.close()


def test_a_pinned_tag_is_mirrored_only_while_it_holds_the_pin(proxy_factory, open_registry, factory, repo_name):
    repo = repo_name("pinned")
    digest = push_tags(open_registry, None, repo, ["1.7.0"], factory)
    proxy = proxy_factory(open_registry)
    good = ref(proxy, repo, f"1.7.0@{digest}")
    result = Copier(make_pool(proxy, open_registry)).copy(good, ref(open_registry, repo_name("dst"), "1.7.0"))
    assert result.target_digest == digest
    moved = ref(proxy, repo, "1.7.0@sha256:" + "0" * 64)
    proxy.reset()
    with pytest.raises(PinMoved, match=f"holds {digest} at the source, not the pinned sha256:0000") as exc:
        Copier(make_pool(proxy, open_registry)).copy(moved, ref(open_registry, repo_name("dst"), "1.7.0"))
    assert not is_retryable(exc.value) and proxy.count("GET", "manifest") == 0


def test_a_digest_without_a_tag_is_mirrored_under_the_target_tag(open_registry, factory, repo_name):
    """`tag = @sha256:…` with `target-tag`: the run's references, then an ordinary copy by digest."""
    from dmi_provider.pipeline import MirrorRun

    repo = repo_name("untagged")
    digest = push_tags(open_registry, None, repo, ["scratch"], factory)
    spec = parse_config(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        [a]
        image = {repo}
        source-registry = {open_registry.host}
        target = registry
        target-registry = {open_registry.host}
        target-repository = {repo}-mirror
        tag = @{digest}
        target-tag = patched
    """), environ={}).section("a")
    ((src, dst),) = MirrorRun(spec).references(open_registry.host)
    assert (src.tag, src.digest, dst.tag) == (None, digest, "patched")
    result = Copier(make_pool(open_registry)).copy(src, dst)
    assert result.target_digest == digest
    assert rig_client(open_registry).get_manifest(f"{repo}-mirror", "patched").status_code == 200


def test_a_section_with_filters_mirrors_the_newest_three_one_task_each(airflow_env, hub, hub_registry,
                                                                       open_registry, factory, tmp_path):
    repo = "library/redis"
    push_tags(hub_registry, HUB_USER, repo, [*REDIS, "7.2.9-extra"], factory)
    hub.tag_page = True  # the Hub stand-in pages its tag lists like Docker Hub
    target = f"t{id(tmp_path) % 100000}"
    config = write_config(tmp_path, hub.host, open_registry.host, f"""
        [redis]
        source-repository = library
        image = redis
        project = {target}
        tags-semver = >=7 <8
        tags-newest = 3
    """)
    env = {"DB_PATH": str(tmp_path / "t.db")}
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "success", run["log"][-5000:]
    # The planning task listed the tags (no task of its own per section), the group copied three.
    assert {name: step["record"] for name, step in run["steps"].items()} == {
        "[redis] 7.4.1": "success", "[redis] 7.4.0": "success", "[redis] 7.2.9": "success"}
    assert {step["push"] for step in run["steps"].values()} == {"success"}
    store = TrackingStore(f"sqlite:///{env['DB_PATH']}")
    assert sorted(r["target"].rsplit(":", 1)[1] for r in store.history()) == ["7.2.9", "7.4.0", "7.4.1"]
    assert sorted(json.loads(rig_client(open_registry).request(
        "GET", f"/v2/{target}/redis/tags/list", "").content)["tags"]) == ["7.2.9", "7.4.0", "7.4.1"]

    hub.reset()
    again = airflow_env.run("dmi_mirror", config, env=env)
    assert again["state"] == "success"
    assert again["steps"] == {}  # settled by the planning task
    assert hub.count("GET", "manifest") == 0  # unchanged: HEADs and one tag listing
    assert [r["status"] for r in store.history(limit=3)] == ["unchanged"] * 3

    # A newer tag appears at the source and a selected one disappears: the next run follows the source
    # and deletes nothing at the target.
    client = rig_client(hub_registry, HUB_USER)
    newer = factory.image()
    push(client, repo, "7.4.3", newer)
    hub.reset()
    third = airflow_env.run("dmi_mirror", config, env=env)
    assert set(third["steps"]) == {"[redis] 7.4.3"}  # only the new tag needs a copy
    assert {r["target"].rsplit(":", 1)[1] for r in store.history(limit=3)} == {"7.4.3", "7.4.1", "7.4.0"}
    assert hub.count("GET", "manifest") == 1  # only the new image's manifest
    # The publisher deletes the tag (distribution 2.8 has no tag DELETE: its storage, as the registry keeps it).
    shutil.rmtree(hub_registry.root / "data/docker/registry/v2/repositories" / repo / "_manifests/tags/7.4.3")
    fourth = airflow_env.run("dmi_mirror", config, env=env)
    assert fourth["steps"] == {}  # 7.2.9 is selected again and the target still holds it
    assert {r["target"].rsplit(":", 1)[1] for r in store.history(limit=3)} == {"7.4.1", "7.4.0", "7.2.9"}
    tags = json.loads(rig_client(open_registry).request("GET", f"/v2/{target}/redis/tags/list", "").content)["tags"]
    assert sorted(tags) == ["7.2.9", "7.4.0", "7.4.1", "7.4.3"]  # 7.4.3 stays at the target
    store.close()


def test_a_moved_pin_fails_its_tag_and_not_the_others(airflow_env, hub_registry, open_registry, factory, tmp_path):
    repo = "pins/app"
    digest = push_tags(hub_registry, HUB_USER, repo, ["1.0", "2.0"], factory)
    config = write_config(tmp_path, hub_registry.host, open_registry.host, f"""
        [app]
        source-repository = pins
        image = app
        project = pinned{id(tmp_path) % 100000}
        tags = 1.0@{digest}, 2.0@sha256:{"9" * 64}
    """)
    env = {"DB_PATH": str(tmp_path / "t.db")}
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "failed"
    assert {name: step["pull"] for name, step in run["steps"].items()} == {
        f"[app] 1.0@{digest}": "success", f"[app] 2.0@sha256:{'9' * 64}": "failed"}
    rows = {r["target"].rsplit(":", 1)[1]: r for r in TrackingStore(f"sqlite:///{env['DB_PATH']}").history()}
    assert rows["1.0"]["status"] == "copied" and rows["2.0"]["status"] == "failed"
    assert "PinMoved" in rows["2.0"]["error"] and f"holds {digest}" in rows["2.0"]["error"]


def test_dmi_plan_prints_the_resolved_tags(hub, hub_registry, open_registry, factory, tmp_path):
    from tests.rig.cli import DMI, dmi

    push_tags(hub_registry, HUB_USER, "plan2/redis", REDIS, factory)
    hub.tag_page = True
    config = write_config(tmp_path, hub.host, open_registry.host, """
        [redis]
        source-repository = plan2
        image = redis
        project = plan2
        tag = latest
        tags-semver = ^8
    """)
    done = dmi("plan", "--verbose", str(config), env={})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "[redis] tags: latest, 8.0.1, 8.0.0"
    assert lines[1].startswith("[redis]   tags-semver left out 37: ")
    budget = lines.pop()  # last: what the run costs at the rate-limited source
    assert budget == f"{hub.host}: this run needs 3 pulls; 100 of 100 left for 127.0.0.1, 10 kept in reserve (pull-reserve)"
    assert [line.split()[1] for line in lines[2:]] == [f"{hub.host}/plan2/redis:{t}" for t in ("latest", "8.0.1",
                                                                                              "8.0.0")]
    assert all(": copy (source sha256:" in line for line in lines[2:])
    assert hub.count("GET", "manifest") == 0
    import subprocess

    shown = subprocess.run([DMI, "validate", str(config)], capture_output=True, text=True, check=True).stdout
    assert f"[redis] {hub.host}/plan2/redis:<tags-semver ^8> -> {open_registry.host}/plan2/redis:<the same tags>" \
        in shown
