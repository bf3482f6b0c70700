"""`dmi check-images`: the images of real manifests judged against a config.ini and a tracking database."""

from __future__ import annotations

import io
import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from dmi_provider.cli import main
from dmi_provider.clusters import check
from dmi_provider.clusters.manifests import ManifestError, images_in
from dmi_provider.config import parse_config
from dmi_provider.tracking.models import MirrorState
from dmi_provider.tracking.store import MirrorOutcome, TrackingStore

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
A, B, D = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "d" * 64
C = "sha256:" + "c" * 64  # in no history and pinned nowhere
MIRROR = "mirror.local:5000"

CONFIG = f"""\
[DEFAULT]
refresh = 1d
target = registry
target-registry = {MIRROR}

[alpine]
image = alpine
tag = 3.20
project = library

[busybox]
image = busybox
tag = 1.36
project = library

[proxyv2]
image = proxyv2
source-repository = istio
tag = 1.7.0
project = istio

[app]
image = app
source-repository = team
source-registry = registry.local:5000
tag = 1.0
project = team

[node-exporter]
image = node-exporter
source-repository = prometheus
source-registry = quay.io
tags-matching = v1\\.8\\.\\d+
project = prometheus

[redis]
image = redis
tags-semver = >=7 <8
project = library
"""

WORKLOADS = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  template:
    spec:
      containers:
        - name: app
          image: alpine:3.20
        - name: sidecar
          image: busybox@{B}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
            - name: mesh
              image: istio/proxyv2:1.7.0
          containers:
            - name: report
              image: docker.io/library/alpine:3.19
---
apiVersion: v1
kind: Pod
metadata: {{name: debug}}
spec:
  containers:
    - name: main
      image: {MIRROR}/library/alpine:3.20
  ephemeralContainers:
    - name: shell
      image: nicolaka/netshoot:v0.13
"""

LIST = """\
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: api}
    spec:
      template:
        spec:
          containers:
            - {name: api, image: "registry.local:5000/team/app:1.0"}
  - apiVersion: apps/v1
    kind: DaemonSet
    metadata: {name: node-exporter}
    spec:
      template:
        spec:
          containers:
            - {name: exporter, image: "quay.io/prometheus/node-exporter:v1.8.2"}
"""

ROLLOUT = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: cache}}
spec:
  template:
    spec:
      containers:
        - name: redis
          image: redis:7.2.4-alpine
        - name: tool
          image: ghcr.io/acme/tool@{C}
"""


def outcome(section: str, source: str, target: str, status: str, digest: str | None) -> MirrorOutcome:
    return MirrorOutcome(dag_id="dmi_mirror_1d", run_id="scheduled__1", section=section, source=source,
                         target=target, status=status, source_digest=digest, target_digest=digest,
                         finished_at=NOW - timedelta(hours=2))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config.ini, three manifest files and a tracking database: alpine:3.20 and busybox mirrored, app last
    checked ten days ago (refresh 1d), proxyv2's only run failed."""
    monkeypatch.setattr(check, "clock", lambda: NOW)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.ini").write_text(CONFIG)
    (tmp_path / "workloads.yaml").write_text(WORKLOADS)
    (tmp_path / "list.yaml").write_text(LIST)
    (tmp_path / "rollout.yaml").write_text(ROLLOUT)
    store = TrackingStore(f"sqlite:///{tmp_path / 'tracking.db'}")
    store.record_many([
        outcome("alpine", "docker.io/library/alpine:3.20", f"{MIRROR}/library/alpine:3.20", "copied", A),
        outcome("busybox", "docker.io/library/busybox:1.36", f"{MIRROR}/library/busybox:1.36", "unchanged", B),
        outcome("app", "registry.local:5000/team/app:1.0", f"{MIRROR}/team/app:1.0", "copied", D),
        outcome("proxyv2", "docker.io/istio/proxyv2:1.7.0", f"{MIRROR}/istio/proxyv2:1.7.0", "failed", None),
    ])
    checked = {"app": NOW - timedelta(days=10)}
    with store.engine.begin() as conn:  # the state rows say when they were last checked: fix it
        for section in ("alpine", "busybox", "app", "proxyv2"):
            conn.execute(update(MirrorState).where(MirrorState.section == section)
                         .values(last_checked=checked.get(section, NOW - timedelta(hours=2))))
    store.close()
    return tmp_path


FILES = ["workloads.yaml", "list.yaml", "rollout.yaml"]
DB = ["--db", "sqlite:///tracking.db"]


def run(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        if stdin is not None:
            patch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["check-images", *args])
    out, err = capsys.readouterr()
    return code, out, err


TABLE = """\
STATUS            IMAGE                                    MIRROR                                                                                                                          USED BY
not yet mirrored  istio/proxyv2:1.7.0                      -> mirror.local:5000/istio/proxyv2:1.7.0; named in [proxyv2], not mirrored yet (the last run failed, 2026-05-10 10:00)          workloads.yaml: CronJob/nightly container mesh (initContainers)
missing           docker.io/library/alpine:3.19            [alpine] mirrors docker.io/library/alpine, but not tag 3.19 (it names 3.20)                                                     workloads.yaml: CronJob/nightly container report
mirrored          alpine:3.20                              -> mirror.local:5000/library/alpine:3.20 @sha256:aaaaaaaaaaaa; checked 2026-05-10 10:00                                         workloads.yaml: Deployment/web container app
mirrored          busybox@sha256:bbbbbbbbbbbb…             -> mirror.local:5000/library/busybox @sha256:bbbbbbbbbbbb; checked 2026-05-10 10:00                                             workloads.yaml: Deployment/web container sidecar
missing           redis:7.2.4-alpine                       [redis] mirrors docker.io/library/redis, but its tags-semver leaves out 7.2.4-alpine                                            rollout.yaml: Rollout/cache container redis
missing           nicolaka/netshoot:v0.13                  no section mirrors docker.io/nicolaka/netshoot                                                                                  workloads.yaml: Pod/debug container shell (ephemeralContainers)
missing           ghcr.io/acme/tool@sha256:cccccccccccc…   no section mirrors ghcr.io/acme/tool                                                                                            rollout.yaml: Rollout/cache container tool
mirrored          mirror.local:5000/library/alpine:3.20    -> mirror.local:5000/library/alpine:3.20 @sha256:aaaaaaaaaaaa; checked 2026-05-10 10:00                                         workloads.yaml: Pod/debug container main
not yet mirrored  quay.io/prometheus/node-exporter:v1.8.2  -> mirror.local:5000/prometheus/node-exporter:v1.8.2; selected by [node-exporter]'s tags-matching v1\\.8\\.\\d+, not mirrored yet  list.yaml: DaemonSet/node-exporter container exporter
stale             registry.local:5000/team/app:1.0         -> mirror.local:5000/team/app:1.0 @sha256:dddddddddddd; last checked 2026-04-30 12:00, more than twice its refresh (1d) ago     list.yaml: Deployment/api container api
10 images: 3 mirrored, 1 stale, 6 missing (2 not yet mirrored)
"""  # noqa: E501


def test_each_image_of_every_workload_kind_against_the_mapping_and_the_history(site, capsys):
    """Deployment, CronJob (initContainers), Pod (ephemeralContainers), a List's items and a CRD's pod template;
    upstream names, a registry with a port, digests, and an image already rewritten to the mirror."""
    assert run(capsys, "config.ini", *FILES, *DB) == (1, TABLE, "")


def test_json_lists_every_image_with_its_uses(site, capsys):
    code, out, _err = run(capsys, "config.ini", *FILES, *DB, "--json")
    assert code == 1
    found = {v["image"]: v for v in json.loads(out)}
    assert {image: v["status"] for image, v in found.items()} == {
        "istio/proxyv2:1.7.0": "not yet mirrored", "docker.io/library/alpine:3.19": "missing",
        "alpine:3.20": "mirrored", f"busybox@{B}": "mirrored", "redis:7.2.4-alpine": "missing",
        "nicolaka/netshoot:v0.13": "missing", f"ghcr.io/acme/tool@{C}": "missing",
        f"{MIRROR}/library/alpine:3.20": "mirrored", "quay.io/prometheus/node-exporter:v1.8.2": "not yet mirrored",
        "registry.local:5000/team/app:1.0": "stale"}
    assert found["alpine:3.20"] == {
        "image": "alpine:3.20", "reference": "docker.io/library/alpine:3.20", "status": "mirrored", "reason": None,
        "section": "alpine", "mirror": f"{MIRROR}/library/alpine:3.20", "digest": A,
        "last_checked": "2026-05-10T10:00:00+00:00",
        "uses": [{"file": "workloads.yaml", "kind": "Deployment", "namespace": "shop", "name": "web",
                  "container": "app", "list": "containers"}]}
    assert found[f"busybox@{B}"]["mirror"] == f"{MIRROR}/library/busybox"


NO_HISTORY = """\
STATUS      IMAGE                                    MIRROR                                                                                                        USED BY
configured  istio/proxyv2:1.7.0                      -> mirror.local:5000/istio/proxyv2:1.7.0                                                                      workloads.yaml: CronJob/nightly container mesh (initContainers)
missing     docker.io/library/alpine:3.19            [alpine] mirrors docker.io/library/alpine, but not tag 3.19 (it names 3.20)                                   workloads.yaml: CronJob/nightly container report
configured  alpine:3.20                              -> mirror.local:5000/library/alpine:3.20                                                                      workloads.yaml: Deployment/web container app
missing     busybox@sha256:bbbbbbbbbbbb…             [busybox] mirrors docker.io/library/busybox, but pins no sha256:bbbbbbbbbbbb                                  workloads.yaml: Deployment/web container sidecar
missing     redis:7.2.4-alpine                       [redis] mirrors docker.io/library/redis, but its tags-semver leaves out 7.2.4-alpine                          rollout.yaml: Rollout/cache container redis
missing     nicolaka/netshoot:v0.13                  no section mirrors docker.io/nicolaka/netshoot                                                                workloads.yaml: Pod/debug container shell (ephemeralContainers)
missing     ghcr.io/acme/tool@sha256:cccccccccccc…   no section mirrors ghcr.io/acme/tool                                                                          rollout.yaml: Rollout/cache container tool
configured  mirror.local:5000/library/alpine:3.20    -> mirror.local:5000/library/alpine:3.20                                                                      workloads.yaml: Pod/debug container main
configured  quay.io/prometheus/node-exporter:v1.8.2  -> mirror.local:5000/prometheus/node-exporter:v1.8.2; selected by [node-exporter]'s tags-matching v1\\.8\\.\\d+  list.yaml: DaemonSet/node-exporter container exporter
configured  registry.local:5000/team/app:1.0         -> mirror.local:5000/team/app:1.0                                                                             list.yaml: Deployment/api container api
10 images: 5 configured, 5 missing
"""  # noqa: E501


def test_no_history_judges_from_config_ini_alone(site, capsys):
    assert run(capsys, "config.ini", *FILES, "--no-history", "--db", "sqlite:///nowhere.db") == (1, NO_HISTORY, "")


SUGGESTION = f"""
# config.ini for the missing images (they take the other keys from [DEFAULT] of config.ini):
# add to [alpine] (in place of its tag/tags lines): tags = 3.20, 3.19
# add to [redis] (in place of its tag/tags lines): tags = 7.2.4-alpine

[netshoot]
image = netshoot
source-repository = nicolaka
tag = v0.13
project = nicolaka

[tool-cccccccccccc]
image = tool
source-repository = acme
source-registry = ghcr.io
tag = @{C}
target-tag = digest-cccccccccccc
project = acme
"""


def test_suggest_prints_config_that_mirrors_the_missing_images(site, capsys):
    code, out, _err = run(capsys, "config.ini", *FILES, *DB, "--suggest")
    assert code == 1 and out == TABLE + SUGGESTION
    pasted = CONFIG + SUGGESTION
    config = parse_config(pasted, "config.ini", {})  # valid as it stands: the hints are comments
    assert config.section("tool-cccccccccccc").pairs() == ((f"@{C}", "digest-cccccccccccc"),)
    assert config.section("netshoot").target_name() == f"{MIRROR}/nicolaka/netshoot"
    # Done as the hints say, config.ini covers every image.
    done = pasted.replace("tag = 3.20\n", "tags = 3.20, 3.19\n").replace(
        "tags-semver = >=7 <8\n", "tags-semver = >=7 <8\ntags = 7.2.4-alpine\n")
    (site / "config.ini").write_text(done)
    code, out, _err = run(capsys, "config.ini", *FILES, "--no-history")
    assert out.splitlines()[-1] == "10 images: 9 configured, 1 missing"  # busybox's digest: only history knows
    code, out, _err = run(capsys, "config.ini", *FILES, *DB)
    assert out.splitlines()[-1] == "10 images: 3 mirrored, 1 stale, 6 missing (6 not yet mirrored)"


def test_a_digest_only_missing_from_a_covered_repository_gets_a_pinned_section_beside_it(site, capsys):
    (site / "pod.yaml").write_text(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                                   f"    - {{name: c, image: 'busybox:1.36@{C}'}}\n")
    code, out, _err = run(capsys, "config.ini", "pod.yaml", *DB, "--suggest")
    assert code == 1
    assert out.split("\n\n", 1)[1] == textwrap.dedent(f"""\
        # config.ini for the missing images (they take the other keys from [DEFAULT] of config.ini):
        [busybox-cccccccccccc]
        image = busybox
        source-repository = library
        tag = @{C}
        target-tag = 1.36-cccccccccccc
        target-repository = library/busybox
        """)
    assert "no run of [busybox] copied sha256:cccccccccccc: it mirrors tag 1.36, which held another digest" in out
    parse_config(CONFIG + out.split("\n\n", 1)[1], "config.ini", {})


def test_exit_0_when_everything_is_mirrored_and_stale_fails_only_when_asked(site, capsys):
    (site / "fine.yaml").write_text(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                                    f"    - {{name: a, image: 'alpine:3.20'}}\n"
                                    f"    - {{name: b, image: '{MIRROR}/library/busybox@{B}'}}\n"
                                    f"    - {{name: c, image: 'registry.local:5000/team/app:1.0'}}\n")
    code, out, _err = run(capsys, "config.ini", "fine.yaml", *DB)
    assert code == 0 and out.splitlines()[-1] == "3 images: 2 mirrored, 1 stale, 0 missing"
    assert f"mirrored  {MIRROR}/library/busybox@sha256:bbbbbbbbbbbb…" in out  # rewritten, by digest
    assert run(capsys, "config.ini", "fine.yaml", *DB, "--fail-on-stale")[0] == 1
    code, out, _err = run(capsys, "config.ini", "fine.yaml", *DB, "--section", "alpine", "--section", "busybox")
    (line,) = [line for line in out.splitlines() if "team/app" in line]
    assert code == 1 and line.split()[:2] == ["missing", "registry.local:5000/team/app:1.0"]
    assert "  no section mirrors registry.local:5000/team/app  " in line  # of the sections asked for


def test_a_failed_last_run_makes_a_mirrored_image_stale(site, capsys):
    store = TrackingStore(f"sqlite:///{site / 'tracking.db'}")
    store.record(MirrorOutcome("dmi_mirror_1d", "scheduled__2", "alpine", "docker.io/library/alpine:3.20",
                               f"{MIRROR}/library/alpine:3.20", "failed", error="429 Too Many Requests"))
    store.close()
    code, out, _err = run(capsys, "config.ini", "-", *DB, stdin="kind: Pod\nspec:\n  containers:\n"
                                                             "    - {name: a, image: alpine:3.20}\n")
    assert code == 0
    line = out.splitlines()[1]
    assert line.startswith("stale   alpine:3.20  -> mirror.local:5000/library/alpine:3.20 @sha256:aaaaaaaaaaaa; "
                           "the last run failed, 2026-")
    assert line.endswith("  <stdin>: Pod/(no name) container a")


def test_tags_a_filter_chose_before_count_and_those_it_no_longer_chooses_are_said(site, capsys):
    store = TrackingStore(f"sqlite:///{site / 'tracking.db'}")
    for tag in ("v1.8.1", "v1.7.0"):
        store.record(outcome("node-exporter", f"quay.io/prometheus/node-exporter:{tag}",
                             f"{MIRROR}/prometheus/node-exporter:{tag}", "copied", D))
    store.close()
    text = "".join(f"---\nkind: Job\nmetadata: {{name: j{i}}}\nspec:\n  template:\n    spec:\n      containers:\n"
                   f"        - {{name: c, image: 'quay.io/prometheus/node-exporter:{tag}'}}\n"
                   for i, tag in enumerate(("v1.8.1", "v1.7.0", "v1.6.0")))
    code, out, _err = run(capsys, "config.ini", "-", *DB, "--json", stdin=text)
    found = {v["image"].rsplit(":", 1)[1]: (v["status"], v["reason"]) for v in json.loads(out)}
    assert found == {
        "v1.8.1": ("mirrored", None),
        "v1.7.0": ("mirrored", "no longer selected by [node-exporter]: not refreshed"),
        "v1.6.0": ("missing", "[node-exporter] mirrors quay.io/prometheus/node-exporter, but its tags-matching "
                              "leaves out v1.6.0")}
    assert code == 1


def test_bad_yaml_names_the_file_and_line(site, capsys):
    (site / "broken.yaml").write_text("kind: Pod\nspec:\n  containers: [\n    {name: a, image: x}\n  - b\n")
    code, out, err = run(capsys, "config.ini", "workloads.yaml", "broken.yaml", "gone.yaml", *DB)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "dmi check-images: broken.yaml:5:3: not valid YAML: expected ',' or ']', but got '-' (while parsing a "
        "flow sequence)",
        "dmi check-images: gone.yaml: no such file"]


def test_a_bad_image_field_is_a_problem_with_its_place_not_a_crash(site, capsys):
    (site / "odd.yaml").write_text("kind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n"
                                   "      containers:\n        - {name: a, image: 'Nginx:Latest'}\n"
                                   "        - {name: b, image: 3}\n")
    code, out, _err = run(capsys, "config.ini", "odd.yaml", "--no-history")
    assert code == 1
    assert out == """\
STATUS   IMAGE         MIRROR                                                                                                           USED BY
invalid  3             the image field is not text: 3                                                                                   odd.yaml: Deployment/w container b
invalid  Nginx:Latest  'Nginx' is not a repository path: lowercase letters, digits and separators (. _ __ -) in components joined by /  odd.yaml: Deployment/w container a
2 images: 0 configured, 0 missing, 2 invalid
"""  # noqa: E501


def test_an_unreadable_history_is_bad_input_with_the_way_out(site, capsys):
    code, out, err = run(capsys, "config.ini", *FILES, "--db", "sqlite:///nowhere.db")
    assert (code, out) == (2, "")
    assert err == ("dmi check-images: cannot read the tracking history (sqlite:///nowhere.db): nowhere.db: no such "
                   "file; --no-history checks against config.ini only\n")
    (site / "junk.db").write_text("not a database " * 100)
    code, out, err = run(capsys, "config.ini", *FILES, "--db", "sqlite:///junk.db")
    assert (code, out) == (2, "")
    assert err.startswith("dmi check-images: cannot read the tracking history (sqlite:///junk.db): ")
    assert err.endswith("; --no-history checks against config.ini only\n") and len(err.splitlines()) == 1


def test_config_problems_are_bad_input(site, capsys, monkeypatch):
    (site / "bad.ini").write_text("[a]\nimage = a\n")
    assert run(capsys, "bad.ini", *FILES, "--no-history")[0] == 2
    monkeypatch.delenv("AWS_ACCOUNT", raising=False)
    (site / "ecr.ini").write_text("[DEFAULT]\nrefresh = 1d\n[a]\nimage = a\ntag = 1\nproject = p\n")
    code, out, err = run(capsys, "ecr.ini", *FILES, "--no-history")
    assert (code, out) == (2, "")
    assert err.startswith("dmi check-images: [a]: the mirror's host is not known before a run: set target-registry")


def test_pod_specs_are_found_by_their_shape_in_any_kind():
    text = """\
kind: PodTemplate
metadata: {name: t, namespace: ns}
template: {spec: {containers: [{name: a, image: a:1}]}}
---
kind: ReplicationController
metadata: {name: rc}
spec: {template: {spec: {containers: [{name: b, image: b:1}], initContainers: [{name: i, image: i:1}]}}}
---
kind: StatefulSetList
items:
  - kind: StatefulSet
    metadata: {name: s}
    spec: {template: {spec: {containers: [{name: c, image: c:1}]}}}
---
kind: Workflow
metadata: {generateName: wf-}
spec:
  templates:
    - {name: step, podSpecPatch: &shared {containers: [{name: d, image: d:1}, {name: no-image}]}}
    - {name: again, podSpecPatch: *shared}
---
just text
---
"""
    assert [(u.kind, u.namespace, u.name, u.container, u.list_name, u.image) for u in images_in(text, "f")] == [
        ("PodTemplate", "ns", "t", "a", "containers", "a:1"),
        ("ReplicationController", None, "rc", "b", "containers", "b:1"),
        ("ReplicationController", None, "rc", "i", "initContainers", "i:1"),
        ("StatefulSet", None, "s", "c", "containers", "c:1"),
        ("Workflow", None, "wf-", "d", "containers", "d:1")]  # once: the second is an alias of the first


def test_nested_aliases_are_walked_once():
    levels = ["a0: &a0 {containers: [{name: x, image: 'x:1'}]}"]
    levels += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    assert len(images_in("\n".join(levels) + "\n", "bomb.yaml")) == 1
    with pytest.raises(ManifestError, match=r"^tabs\.yaml:2:1: not valid YAML: found character '\\t'"):
        images_in("kind: Pod\n\tspec: {}\n", "tabs.yaml")


def test_an_unreachable_server_is_named_without_its_password(site, capsys):
    code, _out, err = run(capsys, "config.ini", "list.yaml", "--db", "postgresql+psycopg2://dmi:s3cret@127.0.0.1:9/x")
    assert code == 2 and "s3cret" not in err and "(postgresql+psycopg2://dmi:***@127.0.0.1:9/x)" in err


def test_the_rewrite_maps_output_applied_to_a_manifest_leaves_nothing_missing(site, capsys):
    """`dmi cluster-config --format rewrite` applied to a manifest (as an admission controller or kustomize
    would), then checked again: every image names the mirror, and the mirror holds it."""
    import yaml

    from dmi_provider.clusters.rewrite import rewrite_reference

    code, out, _ = run_cluster_config(capsys)
    mapping = yaml.safe_load(out.split("\n", 1)[1])
    docs = list(yaml.safe_load_all(WORKLOADS))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine:3.20"
    rewritten = []
    for doc in docs[:1]:  # the Deployment: alpine:3.20 and busybox by digest, both mirrored
        for container in doc["spec"]["template"]["spec"]["containers"]:
            container["image"] = rewrite_reference(container["image"], mapping)
            rewritten.append(container["image"])
    assert rewritten == [f"{MIRROR}/library/alpine:3.20", f"{MIRROR}/library/busybox@{B}"]
    (site / "rewritten.yaml").write_text(yaml.safe_dump_all(docs[:1]))
    code, out, err = run(capsys, "config.ini", "rewritten.yaml", *DB)
    assert code == 0, out + err
    assert out.splitlines()[-1] == "2 images: 2 mirrored, 0 stale, 0 missing"
    assert all(line.startswith("mirrored") for line in out.splitlines()[1:-1])
    # Every image of the whole set through the map: what it rewrites for a named tag the mirror holds; a tag of a
    # section whose filters choose at run time is rewritten on trust, and check-images catches one not there.
    everything = list(yaml.safe_load_all(WORKLOADS)) + list(yaml.safe_load_all(LIST)) + [yaml.safe_load(ROLLOUT)]
    for doc in everything:
        for container in _containers(doc):
            container["image"] = rewrite_reference(container["image"], mapping) or container["image"]
    (site / "all.yaml").write_text(yaml.safe_dump_all(everything))
    _, out, _ = run(capsys, "config.ini", "all.yaml", *DB, "--json")
    sent = {v["image"]: v["status"] for v in json.loads(out) if v["image"].startswith(MIRROR)}
    assert sent == {f"{MIRROR}/library/alpine:3.20": "mirrored", f"{MIRROR}/library/busybox@{B}": "mirrored",
                    f"{MIRROR}/istio/proxyv2:1.7.0": "not yet mirrored", f"{MIRROR}/team/app:1.0": "stale",
                    f"{MIRROR}/prometheus/node-exporter:v1.8.2": "not yet mirrored",
                    f"{MIRROR}/library/redis:7.2.4-alpine": "missing"}  # tags-semver, on trust: caught here
    assert mapping["filtered"] == ["quay.io/prometheus/node-exporter", "docker.io/library/redis", "library/redis",
                                   "redis"]

def _containers(doc: dict) -> list[dict]:
    from dmi_provider.clusters.manifests import _pod_specs

    return [c for spec in _pod_specs(doc) for k in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(k) or []]


def run_cluster_config(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["cluster-config", "config.ini", "--format", "rewrite"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return code, out, err


def test_a_pod_pinning_the_upstream_index_digest_of_a_platforms_section_is_missing(tmp_path, monkeypatch, capsys):
    """A `platforms` section writes its own index: the mirror holds its digest, not the upstream's."""
    monkeypatch.setattr(check, "clock", lambda: NOW)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.ini").write_text(CONFIG.replace("tag = 3.20\n", "tag = 3.20\nplatforms = linux/amd64\n", 1))
    store = TrackingStore(f"sqlite:///{tmp_path / 'tracking.db'}")
    row = outcome("alpine", "docker.io/library/alpine:3.20", f"{MIRROR}/library/alpine:3.20", "copied", A)
    store.record_many([MirrorOutcome(**{**row.__dict__, "source_digest": C})])  # upstream C, mirror A
    store.close()
    (tmp_path / "pod.yaml").write_text(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                                       f"    - {{name: a, image: 'alpine@{C}'}}\n"
                                       f"    - {{name: b, image: 'alpine@{A}'}}\n")
    code, out, _ = run(capsys, "config.ini", "pod.yaml", *DB)
    assert code == 1
    lines = out.splitlines()
    assert lines[1].startswith("mirrored") and f"alpine@{A[:19]}" in lines[1]
    assert lines[2].startswith("missing") and "no run of [alpine] copied sha256:cccccccccccc" in lines[2]


def test_odd_manifests_an_empty_pipe_and_a_renamed_tag_at_the_mirror(site, capsys):
    # Nothing to check (helm failed before the pipe) is bad input, not a pass.
    empty = run(capsys, "config.ini", "-", *DB, stdin="")
    assert empty == (2, "", "dmi check-images: no container images in <stdin>\n")
    odd = ("kind: Deployment\nmetadata: {name: dd}\nspec:\n  template:\n    spec:\n      containers: null\n"
           "      initContainers:\n        - {name: init, image: 'alpine:3.20'}\n"
           "        - {name: later, image: null}\n")
    (site / "manifests").mkdir()
    (site / "manifests" / "odd.YAML").write_text(odd)
    code, out, _ = run(capsys, "config.ini", "manifests", *DB)
    assert code == 0 and out.splitlines()[-1] == "1 image: 1 mirrored, 0 stale, 0 missing"
    assert "Deployment/dd container init (initContainers)" in out
    # A tag renamed by target-tag, named at the mirror by its upstream name: the mirror's tags are listed.
    (site / "config.ini").write_text(CONFIG.replace("tag = 1.36\n", "tag = 1.36\ntarget-tag = stable\n", 1))
    (site / "pod.yaml").write_text(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                                   f"    - {{name: a, image: '{MIRROR}/library/busybox:1.36'}}\n")
    code, out, _ = run(capsys, "config.ini", "pod.yaml", "--no-history")
    assert code == 1 and "[busybox] mirrors docker.io/library/busybox, but not tag 1.36 (it names stable at the " \
                         "mirror)" in out
