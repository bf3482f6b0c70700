"""Docker Hub's pull limit as a budget, through real DAG runs (`dag.test()`, which runs each deferred
task's trigger in process): the rig's Hub stand-in counts pulls per IP or per user in a short sliding
window; DMI spends them only as far as the reserve allows, defers, and resumes by itself."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path

import pytest

from dmi_provider.tracking.store import TrackingStore
from tests.rig.fixtures import HUB_USER, rig_client
from tests.rig.images import ImageFactory, push
from tests.rig.proxy import Fault, Proxy

WINDOW = 8  # seconds: a pull spent comes back this long after
_ns = itertools.count(1)


@pytest.fixture
def limited(hub_registry):  # type: ignore[no-untyped-def]
    proxies: list[Proxy] = []

    def make(**kw: object) -> Proxy:
        proxy = Proxy(hub_registry.url, window=WINDOW, **kw).start()  # type: ignore[arg-type]
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


def seed(hub_registry, count: int) -> tuple[str, list]:  # type: ignore[no-untyped-def]
    ns, factory = f"budget{next(_ns)}", ImageFactory()
    images = [factory.image(layers=[factory.layer(4096)]) for _ in range(count)]
    for i, image in enumerate(images):
        push(rig_client(hub_registry, HUB_USER), f"{ns}/img{i}", "1", image)
    return ns, images


def config(tmp_path: Path, source: Proxy, target, ns: str, count: int, extra: str = "") -> Path:  # type: ignore[no-untyped-def]
    sections = "".join(f"[img{i}]\nimage = img{i}\n" for i in range(count))
    path = tmp_path / "config.ini"
    path.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        refresh = 1w
        source-registry = {source.host}
        source-repository = {ns}
        target = registry
        target-registry = {target.host}
        insecure-registries = {source.host} {target.host}
        project = {ns}
        tag = 1
    """) + textwrap.dedent(extra) + sections)
    return path


def run(airflow_env, path: Path, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[dict, list[dict]]:  # type: ignore[no-untyped-def]
    db = tmp_path / "tracking.db"
    result = airflow_env.run("dmi_mirror", path,
                             env={"DB_PATH": str(db), "DMI_CACHE_DIR": str(tmp_path), **(env or {})})
    assert result["state"] == "success", result["log"][-6000:]
    return result, TrackingStore(f"sqlite:///{db}").history()


def test_more_images_than_pulls_defer_and_complete_without_a_wasted_get(airflow_env, hub_registry, open_registry,
                                                                          limited, tmp_path):
    ns, _images = seed(hub_registry, 5)
    hub = limited(ratelimit=3)
    result, rows = run(airflow_env, config(tmp_path, hub, open_registry, ns, 5, "pull-reserve = 0%\n"), tmp_path)
    assert sorted(r["status"] for r in rows) == ["copied"] * 5
    # Exactly the pulls the copies needed: one manifest GET per image, none refused with a 429.
    assert hub.count("GET", "manifest", 200) == 5 and hub.count("GET", "manifest", 429) == 0
    waits = [line for line in result["log"].splitlines() if "deferred: the task resumes by itself" in line]
    said = re.compile(r"\[img\d\] 127.0.0.1:\d+: 1 pull needed, \d of 3 left in its 8s window \(counted for "
                      r"127.0.0.1\)(, some of them claimed by other tasks already)? and 0 kept in reserve "
                      r"\(pull-reserve\): waiting until \S+ \S+ UTC")
    assert waits and all(said.search(line) for line in waits), waits
    assert all(r["ratelimit_limit"] == 3 and r["ratelimit_source"] == "127.0.0.1" and r["source_pulls"] == 1
               for r in rows)


def test_the_reserve_is_never_spent(airflow_env, hub_registry, open_registry, limited, tmp_path):
    ns, _images = seed(hub_registry, 3)
    hub = limited(ratelimit=4)
    _result, rows = run(airflow_env, config(tmp_path, hub, open_registry, ns, 3, "pull-reserve = 50%\n"), tmp_path)
    assert sorted(r["status"] for r in rows) == ["copied"] * 3
    assert min(r["ratelimit_remaining"] for r in rows) >= 2  # half of 4 stays for the machines sharing the IP
    assert hub.count("GET", "manifest", 429) == 0


def test_a_logged_in_source_and_a_registry_without_headers_never_wait(airflow_env, hub_registry, open_registry,
                                                                      limited, tmp_path):
    ns, _images = seed(hub_registry, 3)
    hub = limited(ratelimit=1, user_ratelimit=100)  # anonymous: 1 pull; the account: 100
    login = {"AIRFLOW_CONN_HUB_LOGIN": json.dumps({"conn_type": "container_registry", "login": HUB_USER[0],
                                                   "password": HUB_USER[1]})}
    result, rows = run(airflow_env, config(tmp_path, hub, open_registry, ns, 3, "source-conn-id = hub_login\n"),
                       tmp_path, login)
    assert "deferred" not in result["log"]
    assert {(r["status"], r["ratelimit_limit"], r["ratelimit_source"]) for r in rows} == {
        ("copied", 100, HUB_USER[0])}

    plain = limited()  # no ratelimit headers at all: no limit, nothing waits
    ns2, _ = seed(hub_registry, 2)
    (tmp_path / "plain").mkdir()
    result, rows = run(airflow_env, config(tmp_path / "plain", plain, open_registry, ns2, 2), tmp_path / "plain")
    assert "deferred" not in result["log"] and {r["ratelimit_limit"] for r in rows} == {None}


def test_a_429_with_retry_after_defers_and_completes(airflow_env, hub_registry, open_registry, limited, tmp_path):
    ns, _images = seed(hub_registry, 1)
    hub = limited(ratelimit=50)
    hub.inject(Fault(method="GET", path="/manifests/", status=429, headers={"Retry-After": "7"},
                     body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'))
    result, rows = run(airflow_env, config(tmp_path, hub, open_registry, ns, 1), tmp_path)
    assert [r["status"] for r in rows] == ["copied"]
    assert hub.count("GET", "manifest", 429) == 1 and hub.count("GET", "manifest", 200) == 1
    assert "HTTP 429 TOOMANYREQUESTS: slow down" in result["log"] and "deferred" in result["log"]


def test_dmi_plan_says_what_the_run_costs_and_whether_it_would_wait(hub_registry, open_registry, limited, tmp_path):
    import subprocess
    import sys

    ns, _images = seed(hub_registry, 5)
    hub = limited(ratelimit=3)
    path = config(tmp_path, hub, open_registry, ns, 5)
    done = subprocess.run([str(Path(sys.executable).with_name("dmi")), "plan", str(path)], capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        f"{hub.host}: this run needs 5 pulls; 3 of 3 left for 127.0.0.1, 1 kept in reserve (pull-reserve)",
        f"{hub.host}: warning: not enough pulls left: some pull tasks will wait (deferred) until the window frees "
        "pulls"]
    assert hub.count("GET", "manifest") == 0  # HEADs only (and one referrers listing: not a pull)
    assert hub.remaining == 3


def test_dmi_copy_keeps_the_reserve_too(hub_registry, open_registry, limited, tmp_path):
    import subprocess
    import sys

    ns, _images = seed(hub_registry, 1)
    hub = limited(ratelimit=10)
    hub.remaining = 1
    argv = [str(Path(sys.executable).with_name("dmi")), "copy", "--insecure", hub.host, "--insecure",
            open_registry.host, f"{hub.host}/{ns}/img0:1", f"{open_registry.host}/{ns}/img0:1"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DMI_CACHE_DIR": str(tmp_path)}
    kept = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert kept.returncode == 1
    assert kept.stderr.strip().splitlines()[-1] == (
        f"dmi copy: failed: {hub.host}: 1 pull needed, 1 of 10 left in its 8s window (counted for 127.0.0.1) and 1 "
        "kept in reserve (--pull-reserve): try again in 1s, or lower it")
    assert hub.count("GET", "manifest") == 0
    spent = subprocess.run([*argv[:2], "--pull-reserve", "0", *argv[2:]], capture_output=True, text=True, timeout=300,
                           env=env)
    assert spent.returncode == 0, spent.stderr
    assert hub.count("GET", "manifest", 200) == 1 and hub.remaining == 0


