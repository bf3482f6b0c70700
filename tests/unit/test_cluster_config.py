"""`dmi cluster-config`: the files each format writes from config.ini, and the mappings each refuses.
(tests/integration/test_cluster_config.py pulls through the containerd files with a real containerd.)"""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

from dmi_provider.cli import main
from dmi_provider.clusters.mapping import MappingError, mirrors_of
from dmi_provider.clusters.rewrite import kyverno_policy, rewrite_map, rewrite_reference
from dmi_provider.config import parse_config
from dmi_provider.registry.reference import PATH_RE, check_host

ENV = {"AWS_ACCOUNT": "123456789012", "AWS_DEFAULT_REGION": "eu-west-1"}
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
CONFIG = """\
[DEFAULT]
refresh = 1d

[aws/proxyv2]
image = proxyv2
tag = 1.7.0
source-repository = istio
project = istio

[alpine]
image = alpine
tags = 3.19, 3.20
project = library

[quay]
source-registry = quay.io
image = coreos/etcd
tags-matching = v3\\.5\\..*
target-repository = quay.io/coreos/etcd

[harbor]
target = registry
target-registry = harbor.local:8443
image = nginx
tag = 1.27
project = library
"""


def mirrors(text: str = CONFIG, env: dict[str, str] | None = None) -> list:
    return mirrors_of(parse_config(textwrap.dedent(text), "config.ini", ENV if env is None else env))


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, text: str = CONFIG,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    config = tmp_path / "config.ini"
    config.write_text(text)
    code = main(["cluster-config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_containerd_writes_a_hosts_toml_per_upstream_registry_with_prefixes_and_the_upstream_as_fallback(
        tmp_path, capsys):
    code, _out, err = run(tmp_path, capsys, "--format", "containerd", "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.toml")) == \
        ["docker.io/hosts.toml", "quay.io/hosts.toml"]
    assert (tmp_path / "d" / "docker.io" / "hosts.toml").read_text() == textwrap.dedent(f"""\
        # Written by `dmi cluster-config --format containerd` from config.ini; regenerate it, do not edit it.
        # docker.io: 3 section(s) mirrored
        server = "https://registry-1.docker.io"  # the upstream, for images the mirror does not hold

        # [aws/proxyv2], [alpine]
        [host."https://{ECR}"]
          capabilities = ["pull", "resolve"]

        # [harbor]
        [host."https://harbor.local:8443"]
          capabilities = ["pull", "resolve"]
        """)
    quay = tomllib.loads((tmp_path / "d" / "quay.io" / "hosts.toml").read_text())
    assert quay == {"server": "https://quay.io", "host": {f"https://{ECR}/v2/quay.io": {
        "capabilities": ["pull", "resolve"], "override_path": True}}}
    # ECR needs a login the runtime does not get from the kubelet for a mirror: said once per host.
    assert err.count(f"warning: {ECR} ([aws/proxyv2]) needs a login (AWS ECR)") == 1
    assert "harbor.local" not in err


def test_containerd_without_fallback_pulls_only_from_the_mirror_and_upstream_moves_the_fallback(tmp_path, capsys):
    code, out, _ = run(tmp_path, capsys, "--format", "containerd", "--no-fallback", "--section", "quay")
    assert code == 0
    toml = tomllib.loads(out.split("\n", 1)[1])
    assert toml["server"] == f"https://{ECR}/v2/quay.io" and toml["override_path"] is True
    assert "host" not in toml  # the server is the mirror: not listed twice
    code, out, _ = run(tmp_path, capsys, "--format", "containerd", "--upstream", "docker.io=http://hub-cache.local:5000",
                       "--section", "alpine")
    assert tomllib.loads(out.split("\n", 1)[1])["server"] == "http://hub-cache.local:5000"


def test_containerd_refuses_a_rename_no_prefix_expresses_and_partial_writes_the_rest(tmp_path, capsys):
    text = CONFIG.replace("project = library\n\n[quay]", "project = mirror\n\n[quay]")
    code, out, err = run(tmp_path, capsys, "--format", "containerd", "--out", str(tmp_path / "d"), text=text)
    assert code == 2 and out == "" and not (tmp_path / "d").exists()
    assert (f"dmi cluster-config: [alpine]: docker.io/library/alpine is mirrored to {ECR}/mirror/alpine, a path that "
            "does not end with library/alpine; containerd asks a mirror for the upstream path under a prefix: set "
            "target-repository = mirror/library/alpine, or use --format cri-o or rewrite") in err
    code, out, err = run(tmp_path, capsys, "--format", "containerd", "--partial", text=text)
    assert code == 0 and "left out: [alpine]" in err
    assert "[alpine]" not in out and "[aws/proxyv2]" in out


def test_every_format_refuses_one_upstream_repository_sent_to_two_places_naming_both_sections(tmp_path, capsys):
    text = CONFIG + "\n[alpine-edge]\nimage = alpine\ntag = edge\nproject = other\n"
    for fmt in ("containerd", "cri-o", "rewrite", "kyverno"):
        code, out, err = run(tmp_path, capsys, "--format", fmt, text=text)
        assert code == 2 and out == "", fmt
        assert (f"[alpine] and [alpine-edge] both mirror docker.io/library/alpine, to {ECR}/library/alpine"
                in err), (fmt, err)
    # The same place twice is one mapping, not a conflict.
    same = CONFIG + "\n[alpine-edge]\nimage = alpine\ntag = edge\nproject = library\n"
    assert run(tmp_path, capsys, "--format", "cri-o", text=same)[0] == 0


def test_tag_renames_are_refused_by_the_runtimes_and_carried_by_the_rewrite(tmp_path, capsys):
    text = CONFIG + "\n[pinned]\nimage = busybox\ntag = 1.36\ntarget-tag = stable\nproject = library\n"
    for fmt in ("containerd", "cri-o"):
        code, _, err = run(tmp_path, capsys, "--format", fmt, text=text)
        assert code == 2 and "[pinned]: target-tag writes docker.io/library/busybox:1.36 as stable" in err
    mapping = rewrite_map(mirrors(text))
    assert mapping["images"]["busybox:1.36"] == f"{ECR}/library/busybox:stable"
    assert rewrite_reference("docker.io/library/busybox:1.36", mapping) == f"{ECR}/library/busybox:stable"


def test_a_mirror_host_known_only_at_run_time_is_named_with_what_to_set(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCOUNT")
    code, out, err = run(tmp_path, capsys, "--format", "rewrite")
    assert code == 2 and out == ""
    assert ("[aws/proxyv2]: the mirror's host is not known before a run: set target-registry, or AWS_ACCOUNT and "
            "AWS_DEFAULT_REGION in the environment") in err
    assert "[alpine]" in err and "[harbor]" not in err
    with pytest.raises(MappingError, match=r"set gar-project"):
        mirrors("[DEFAULT]\nrefresh = 1d\n[g]\ntarget = gar\nimage = alpine\ntag = 3\nproject = p\n")
    with pytest.raises(SystemExit):
        main(["cluster-config", "x.ini", "--format", "containerd", "--upstream", "docker.io"])
    assert "expected REGISTRY=URL" in capsys.readouterr().err


def test_gar_puts_project_and_repository_before_the_path(tmp_path, capsys):
    text = "[DEFAULT]\nrefresh = 1d\n[g]\ntarget = gar\ngar-location = europe\ngar-project = my-proj\n" \
           "image = proxyv2\nsource-repository = istio\ntag = 1.7.0\nproject = istio\n"
    code, out, err = run(tmp_path, capsys, "--format", "containerd", text=text)
    assert code == 0
    toml = tomllib.loads(out.split("\n", 1)[1])
    assert toml["host"] == {"https://europe-docker.pkg.dev/v2/my-proj/mirror": {"capabilities": ["pull", "resolve"],
                                                                               "override_path": True}}
    assert "needs a login (Google Artifact Registry)" in err


def test_cri_o_drop_in_follows_the_registries_conf_rules(tmp_path, capsys):
    text = CONFIG + "insecure-registries = harbor.local:8443\n"
    code, out, _ = run(tmp_path, capsys, "--format", "cri-o", "--out", str(tmp_path / "c"), text=text)
    assert code == 0
    conf = tomllib.loads((tmp_path / "c" / "registries.conf.d" / "50-dmi-mirror.conf").read_text())
    # containers-registries.conf(5), version 2: [[registry]] tables of prefix, location, insecure, mirrors.
    assert set(conf) == {"registry"}
    prefixes = [r["prefix"] for r in conf["registry"]]
    assert len(prefixes) == len(set(prefixes)) == 4
    for entry in conf["registry"]:
        assert set(entry) <= {"prefix", "location", "insecure", "blocked", "mirror"}
        for where in (entry["prefix"], entry["location"], *(m["location"] for m in entry["mirror"])):
            host, _, path = where.partition("/")
            assert "://" not in where and check_host(host) and PATH_RE.fullmatch(path), where
        for m in entry["mirror"]:
            assert set(m) <= {"location", "insecure", "pull-from-mirror"}
            assert isinstance(m.get("insecure", False), bool)
    by_prefix = {r["prefix"]: r for r in conf["registry"]}
    assert by_prefix["docker.io/library/alpine"] == {"prefix": "docker.io/library/alpine",
                                                     "location": "docker.io/library/alpine",
                                                     "mirror": [{"location": f"{ECR}/library/alpine"}]}
    assert by_prefix["quay.io/coreos/etcd"]["mirror"] == [{"location": f"{ECR}/quay.io/coreos/etcd"}]
    assert by_prefix["docker.io/library/nginx"]["mirror"] == [{"location": "harbor.local:8443/library/nginx",
                                                               "insecure": True}]
    code, out, _ = run(tmp_path, capsys, "--format", "cri-o", "--no-fallback", "--section", "alpine")
    assert tomllib.loads(out.split("\n", 1)[1])["registry"] == [
        {"prefix": "docker.io/library/alpine", "location": f"{ECR}/library/alpine"}]


def test_rewrite_maps_every_written_form_tag_and_digest(tmp_path, capsys):
    assert run(tmp_path, capsys, "--format", "rewrite", "--out", str(tmp_path / "r"))[0] == 0
    code, out, _ = run(tmp_path, capsys, "--format", "rewrite")
    assert code == 0 and out.split("\n", 1)[1] == (tmp_path / "r" / "rewrite.yaml").read_text()
    mapping = yaml.safe_load(out.split("\n", 1)[1])
    assert mapping["repositories"]["alpine"] == f"{ECR}/library/alpine"
    assert mapping["images"]["istio/proxyv2:1.7.0"] == f"{ECR}/istio/proxyv2:1.7.0"
    assert {"name": "quay.io/coreos/etcd", "newName": f"{ECR}/quay.io/coreos/etcd"} in mapping["kustomize"]["images"]
    digest = "sha256:" + "a" * 64
    cases = {"alpine:3.20": f"{ECR}/library/alpine:3.20", f"alpine@{digest}": f"{ECR}/library/alpine@{digest}",
             f"docker.io/istio/proxyv2:1.7.0@{digest}": f"{ECR}/istio/proxyv2:1.7.0@{digest}",
             "quay.io/coreos/etcd:v3.5.9": f"{ECR}/quay.io/coreos/etcd:v3.5.9",
             "nginx": "harbor.local:8443/library/nginx",
             "quay.io/other/thing:1": None, "istio/pilot:1.7.0": None}
    for image, expected in cases.items():
        assert rewrite_reference(image, mapping) == expected, image
    _code, out, _ = run(tmp_path, capsys, "--format", "rewrite", "--json")
    assert json.loads(out.split("\n", 1)[1]) == mapping


def test_kyverno_rules_rewrite_only_the_tags_the_mirror_holds():
    text = CONFIG + "\n[pinned]\nimage = busybox\ntag = 1.36\ntarget-tag = stable\nproject = library\n" \
                    "\n[semver]\nimage = redis\ntags-semver = >=7 <8\nproject = library\n"
    policy, left_out = kyverno_policy(mirrors(text))
    assert policy["kind"] == "ClusterPolicy"
    assert left_out == ["[semver]: its tags are chosen at run time (tags-semver >=7 <8), which a policy cannot tell "
                        "at admission: not in the policy (use the map with dmi check-images in CI)"]
    rules = []
    names = [rule["name"] for rule in policy["spec"]["rules"]]
    assert len(names) == len(set(names)) == 5
    for rule in policy["spec"]["rules"]:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rule["name"]) and len(rule["name"]) <= 63
        each = rule["mutate"]["foreach"]
        assert [e["list"] for e in each] == ["request.object.spec.containers || `[]`",
                                             "request.object.spec.initContainers || `[]`"]
        image = each[0]["patchStrategicMerge"]["spec"]["containers"][0]["image"]
        call = r"\{\{ regex_replace_all\('(.*)', '\{\{ element.image \}\}', '(.*)'\) \}\}"
        pattern, replacement = re.fullmatch(call, image).group(1, 2)
        rules.append((pattern, re.sub(r"\$\{(\d)\}", r"\\\1", replacement)))

    def rewrite(image: str) -> str:
        for pattern, replacement in rules:
            if re.fullmatch(pattern, image):  # the precondition, RE2 syntax Python reads the same
                return re.sub(pattern, replacement, image)
        return image

    digest = "sha256:" + "b" * 64
    assert rewrite("alpine:3.20") == f"{ECR}/library/alpine:3.20"
    assert rewrite(f"index.docker.io/library/alpine:3.19@{digest}") == f"{ECR}/library/alpine:3.19@{digest}"
    assert rewrite("istio/proxyv2:1.7.0") == f"{ECR}/istio/proxyv2:1.7.0"
    assert rewrite("quay.io/coreos/etcd:v3.5.9") == f"{ECR}/quay.io/coreos/etcd:v3.5.9"
    assert rewrite("busybox:1.36") == f"{ECR}/library/busybox:stable"
    for untouched in ("alpine:3.18", "docker.io/library/alpine", f"alpine@{digest}", "alpine-extra:3.20",
                      "myorg/alpine:3.20", "istio/proxyv2-extra:1.7.0", "quay.io/coreos/etcd:v3.4.0",
                      "quay.io/coreos/etcdctl:v3.5.9", "ghcr.io/library/alpine:3.20", "redis:7.2", "busybox:1.37"):
        assert rewrite(untouched) == untouched, untouched
    # Long section names still give unique names.
    many = "[DEFAULT]\nrefresh = 1d\ntarget = registry\ntarget-registry = m.local\n" + "".join(
        f"\n[a-very-long-section-name-for-the-team-platform-services-{i}]\nimage = app{i}\ntag = 1\n"
        f"project = team\n" for i in range(2))
    names = [r["name"] for r in kyverno_policy(mirrors(many))[0]["spec"]["rules"]]
    assert len(set(names)) == 2 and all(len(n) <= 63 for n in names)

def test_a_plain_http_upstream_stays_plain_http_in_the_fallback(tmp_path, capsys):
    text = "[DEFAULT]\nrefresh = 1d\n[own]\nsource-registry = registry.local:5000\ninsecure-registries = " \
           "registry.local:5000\ntarget = registry\ntarget-registry = mirror.local\nimage = app\ntag = 1.0\n" \
           "source-repository = team\nproject = team\n"
    code, out, _ = run(tmp_path, capsys, "--format", "containerd", "--out", str(tmp_path / "d"), text=text)
    toml = tomllib.loads((tmp_path / "d" / "registry.local:5000" / "hosts.toml").read_text())
    assert code == 0 and toml == {"server": "http://registry.local:5000",
                                  "host": {"https://mirror.local": {"capabilities": ["pull", "resolve"]}}}
    code, out, _ = run(tmp_path, capsys, "--format", "cri-o", text=text)
    assert tomllib.loads(out.split("\n", 1)[1])["registry"] == [
        {"prefix": "registry.local:5000/team/app", "location": "registry.local:5000/team/app", "insecure": True,
         "mirror": [{"location": "mirror.local/team/app"}]}]


def test_a_later_run_removes_only_what_an_earlier_run_of_this_config_wrote_for_registries_it_dropped(
        tmp_path, capsys):
    out = tmp_path / "certs.d"
    assert run(tmp_path, capsys, "--format", "containerd", "--out", str(out))[0] == 0
    (out / "ghcr.io").mkdir()
    (out / "ghcr.io" / "hosts.toml").write_text('server = "https://ghcr.io"\n')  # the admin's own file
    (out / "gcr.io").mkdir()  # another config's
    (out / "gcr.io" / "hosts.toml").write_text((out / "quay.io" / "hosts.toml").read_text().replace(
        "from config.ini", "from other.ini"))
    # --section writes a part of config.ini: nothing else is removed.
    code, stdout, _ = run(tmp_path, capsys, "--format", "containerd", "--out", str(out), "--section", "alpine")
    assert code == 0 and "removed" not in stdout
    without_quay = CONFIG.replace("source-registry = quay.io\n", "").replace(
        "target-repository = quay.io/coreos/etcd", "target-repository = coreos/etcd")
    code, stdout, err = run(tmp_path, capsys, "--format", "containerd", "--out", str(out), text=without_quay)
    assert code == 0, err
    assert f"removed {out / 'quay.io' / 'hosts.toml'}" in stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("hosts.toml")) == [
        "docker.io/hosts.toml", "gcr.io/hosts.toml", "ghcr.io/hosts.toml"]


def test_a_file_dmi_did_not_write_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "certs.d"
    (out / "docker.io").mkdir(parents=True)
    (out / "docker.io" / "hosts.toml").write_text('server = "https://corp-cache.local"\n')
    code, stdout, err = run(tmp_path, capsys, "--format", "containerd", "--out", str(out))
    assert code == 2 and stdout == ""
    assert f"{out / 'docker.io' / 'hosts.toml'} exists and was not written by dmi cluster-config" in err
    assert "corp-cache" in (out / "docker.io" / "hosts.toml").read_text() and not (out / "quay.io").exists()
    assert run(tmp_path, capsys, "--format", "containerd", "--out", str(out), "--force")[0] == 0
    assert "corp-cache" not in (out / "docker.io" / "hosts.toml").read_text()
    assert not list(out.rglob("*.dmi-part"))


def test_a_mirror_path_another_registry_wrote_is_refused_where_its_hosts_toml_would_serve_it(tmp_path, capsys):
    """docker.io's hosts.toml sends docker.io/coreos/etcd to the mirror host: quay.io's etcd must not be there."""
    crossing = CONFIG.replace("target-repository = quay.io/coreos/etcd", "target-repository = coreos/etcd")
    code, out, err = run(tmp_path, capsys, "--format", "containerd", text=crossing)
    assert code == 2 and out == ""
    assert (f"[quay] writes quay.io/coreos/etcd to {ECR}/coreos/etcd, where docker.io's hosts.toml ([aws/proxyv2]) "
            "sends docker.io/coreos/etcd pulls: that image would come from quay.io; give each registry its own "
            "folder (target-repository = quay.io/coreos/etcd)") in err
    assert "--partial" not in err  # --partial would not help
    # Two upstream repositories into one mirror repository: refused by every format.
    same = CONFIG + "\n[etcd-hub]\nimage = etcd\nsource-repository = coreos\ntag = 3\n" \
                    "target-repository = quay.io/coreos/etcd\n"
    code, _, err = run(tmp_path, capsys, "--format", "rewrite", text=same)
    assert code == 2 and (f"[quay] and [etcd-hub] both write {ECR}/quay.io/coreos/etcd, from quay.io/coreos/etcd "
                          "and from docker.io/coreos/etcd") in err
