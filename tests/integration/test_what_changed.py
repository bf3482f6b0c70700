"""A run costs what changed: the planning task settles unchanged images with HEADs (and one tag listing per
repository for their referrers), and only changed images get task instances. Counted from the source's
requests and Airflow's task instances (dag.test() on the rig), never timed."""

from __future__ import annotations

import textwrap

from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import push

REPOS, TAGS = 2, 5  # ten images, two repositories


def test_unchanged_images_cost_a_head_each_and_changed_ones_alone_get_tasks(airflow_env, hub, hub_registry,
                                                                             open_registry, factory, tmp_path):
    client = rig_client(hub_registry, HUB_USER)
    names = [(f"few/app{r}", f"1.{t}") for r in range(REPOS) for t in range(TAGS)]
    for repo, tag in names:
        push(client, repo, tag, factory.image())
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        target = registry
        target-registry = {open_registry.host}
        insecure-registries = {hub.host}, {open_registry.host}
        project = changed{id(tmp_path) % 100000}
    """) + "".join(f"\n[{repo.split('/')[1]}-{tag}]\nimage = {repo}\ntag = {tag}\n" for repo, tag in names))
    env = {"DB_PATH": str(tmp_path / "t.db"), "DMI_CACHE_DIR": str(tmp_path / "cache")}
    first = airflow_env.run("dmi_mirror", config, env=env)
    assert first["state"] == "success", first["log"][-5000:]
    assert len(first["steps"]) == len(names)

    hub.reset()
    warm = airflow_env.run("dmi_mirror", config, env=env)
    assert warm["state"] == "success", warm["log"][-5000:]
    # Nothing changed: only the planning task ran; every image has its row, and the source saw one HEAD per
    # image, one tag listing per repository (cosign's and the fallback's tags looked up in it) and no GET.
    assert [t.split("[")[0] for t in warm["ran"]] == ["plan_" + next(iter(warm["tasks"])).split(".")[0]]
    assert warm["steps"] == {}
    assert hub.count("HEAD", "manifest", 200) == len(names)
    assert hub.count("GET", "manifest") == 0 and hub.count("GET", "blob") == 0
    listings = [h for h in hub.hits if h.method == "GET" and "/tags/list" in h.path]
    assert len(listings) == REPOS
    assert hub.count() <= len(names) + REPOS + 2  # + the referrers API probe and a login challenge, at most
    store = TrackingStore(f"sqlite:///{env['DB_PATH']}")
    rows = [r for r in store.history(limit=100) if r["run_id"] == warm["run_id"]]
    assert sorted(r["status"] for r in rows) == ["unchanged"] * len(names)
    assert len(store.state()) == len(names)

    # Three tags move at the source: their groups alone get task instances, and only they are copied.
    moved = [names[1], names[6], names[9]]
    for repo, tag in moved:
        push(client, repo, tag, factory.image())
    hub.reset()
    third = airflow_env.run("dmi_mirror", config, env=env)
    assert third["state"] == "success", third["log"][-5000:]
    assert sorted(third["steps"]) == sorted(f"[{repo.split('/')[1]}-{tag}] {tag}" for repo, tag in moved)
    lane = next(t for t in third["tasks"] if t.startswith("plan_")).removeprefix("plan_")
    # The planning task, and per moved image pull, ensure_repository, push, record. (The registry engine's
    # tag step is an EmptyOperator, which the scheduler settles without a process, tests/unit/test_dag_shape;
    # dag.test() runs even those inline, so they are left out here.)
    ran = sorted(t for t in third["ran"] if ".tag[" not in t)
    assert ran == sorted([f"plan_{lane}[-1]"] + [f"{lane}.{step}[{i}]" for i in range(3)
                                                  for step in ("pull", "ensure_repository", "push", "record")])
    assert hub.count("GET", "manifest", 200) == 3  # exactly the three moved images were fetched
    rows = [r for r in store.history(limit=100) if r["run_id"] == third["run_id"]]
    assert sorted(r["status"] for r in rows) == ["copied"] * 3 + ["unchanged"] * 7
    assert {r["section"] for r in rows if r["status"] == "copied"} == {f"{r.split('/')[1]}-{t}" for r, t in moved}
    assert len(third["asset_events"]) == 3
    store.close()
