from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from dmi_provider.config import ConfigError, Refresh, load_config, parse_config
from dmi_provider.config_keys import PolicyFile
from dmi_provider.spec import BudgetSpec, EcrSettings, MirrorSpec, SelectionSpec, SourceSpec, TargetSpec

SEED = """\
[DEFAULT]
refresh = 1w

[aws/proxyv2]
image = proxyv2
tag = 1.7.0
source-repository = istio
project = istio

[aws/pilot]
image = pilot
tag = 1.7.0
source-repository = istio
project = istio
"""


def parse(text: str, env: dict[str, str] | None = None, path: str = "config.ini"):
    return parse_config(textwrap.dedent(text), path, env or {})


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text, env)
    return [str(i) for i in exc.value.issues]


WEEKLY = Refresh("1w", timedelta(weeks=1))


def test_original_seed_format():
    config = parse(SEED)
    assert config.default_refresh == Refresh("1w", timedelta(weeks=1))
    assert config.sections == (
        MirrorSpec(
            section="aws/proxyv2", dag_id="dmi_mirror", refresh=WEEKLY,
            source=SourceSpec(registry="docker.io", repository="istio/proxyv2"),
            target=TargetSpec(kind="ecr", repository="istio/proxyv2"), selection=SelectionSpec(tags=("1.7.0",)),
            budget=BudgetSpec(pool="dmi_docker_io"),
        ),
        MirrorSpec(
            section="aws/pilot", dag_id="dmi_mirror", refresh=WEEKLY,
            source=SourceSpec(registry="docker.io", repository="istio/pilot"),
            target=TargetSpec(kind="ecr", repository="istio/pilot"), selection=SelectionSpec(tags=("1.7.0",)),
            budget=BudgetSpec(pool="dmi_docker_io"),
        ),
    )
    assert list(config.dags()) == ["dmi_mirror"]
    assert config.section("aws/pilot").source.name == "docker.io/istio/pilot"
    assert config.section("aws/pilot").pairs() == (("1.7.0", "1.7.0"),)


@pytest.mark.parametrize(
    ("value", "text", "interval"),
    [("0", "0", None), ("30m", "30m", timedelta(minutes=30)), ("60m", "1h", timedelta(hours=1)),
     ("6h", "6h", timedelta(hours=6)), ("48h", "2d", timedelta(days=2)), ("7d", "1w", timedelta(weeks=1)),
     ("2W", "2w", timedelta(weeks=2)), (" 90m ", "90m", timedelta(minutes=90))],
)
def test_refresh_values(value, text, interval):
    config = parse(f"[DEFAULT]\nrefresh = {value}\n[a]\nimage = a\ntag = 1\nproject = p\n")
    assert config.default_refresh == Refresh(text, interval)
    assert config.sections[0].refresh.once is (interval is None)


def test_sections_override_refresh_and_land_in_their_own_dag():
    config = parse("""
        [DEFAULT]
        refresh = 1w
        project = p
        tag = 1
        [weekly]
        image = a
        [also-weekly]
        image = b
        refresh = 7d
        [daily]
        image = c
        refresh = 24h
        [once]
        image = d
        refresh = 0
    """)
    assert {name: [s.section for s in specs] for name, specs in config.dags().items()} == {
        "dmi_mirror": ["weekly", "also-weekly"],
        "dmi_mirror_1d": ["daily"],
        "dmi_mirror_once": ["once"],
    }
    assert config.section("once").refresh.schedule == "@once"


def test_every_extension_key(tmp_path):
    policy = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan",
                                                          "countNumber": 5}, "action": {"type": "expire"}}]}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    (tmp_path / "config.ini").write_text(textwrap.dedent("""
        [DEFAULT]
        refresh = 1d
        insecure-registries = 127.0.0.1:5000

        [ecr-full]
        image = proxyv2
        source-repository = istio
        source-registry = quay.io
        tags = 1.7.0, 1.8.0
          1.9.0
        platforms = linux/amd64,linux/arm64/v8
        project = mirror
        target-registry = vpce-1.dkr.ecr.eu-west-1.vpce.amazonaws.com
        target-repository = team/istio-proxy
        source-conn-id = quay_creds
        aws-conn-id = aws_mirror
        scan-on-push = yes
        tag-mutability = immutable
        encryption = KMS
        kms-key = alias/mirror
        lifecycle-policy = policy.json
        repository-tags = team=platform, cost-center = 42

        [generic]
        image = alpine
        tag = 3.20
        target-tag = stable
        target = registry
        target-registry = registry.internal:5443
        target-conn-id = internal_registry
        project = base
        engine = docker
        docker-url = tcp://127.0.0.1:2375
        docker-conn-id = hub_login
        keep-local-images = yes
        tracking-conn-id = tracking_pg
    """))
    config = load_config(tmp_path / "config.ini", {})
    full = config.section("ecr-full")
    assert full.source.name == "quay.io/istio/proxyv2"
    assert full.selection.tags == ("1.7.0", "1.8.0", "1.9.0")
    assert full.selection.platforms == ("linux/amd64", "linux/arm64/v8")
    assert full.target.kind == "ecr"
    assert full.target.registry == "vpce-1.dkr.ecr.eu-west-1.vpce.amazonaws.com"
    assert full.target.repository == "team/istio-proxy"
    assert full.transfer.insecure_registries == ("127.0.0.1:5000",)
    assert (full.source.conn_id, full.target.conn_id, full.target.ecr.conn_id) == ("quay_creds", None, "aws_mirror")
    assert full.engine.name == "registry"
    assert full.target.ecr == EcrSettings(
        conn_id="aws_mirror", scan_on_push=True, tag_mutability="IMMUTABLE", encryption="KMS", kms_key="alias/mirror",
        lifecycle_policy=PolicyFile(str(tmp_path / "policy.json"), json.dumps(policy)),
        repository_tags=(("team", "platform"), ("cost-center", "42")),
    )
    generic = config.section("generic")
    assert generic.source.name == "docker.io/library/alpine"
    assert generic.target.kind == "registry"
    assert generic.target_name() == "registry.internal:5443/base/alpine"
    assert generic.pairs() == (("3.20", "stable"),)
    assert generic.target.conn_id == "internal_registry"
    assert generic.target.ecr.conn_id == "aws_default"
    engine = generic.engine
    assert (engine.name, engine.docker_url, engine.docker_conn_id, engine.keep_local_images) == (
        "docker", "tcp://127.0.0.1:2375", "hub_login", True)
    assert (generic.tracking_conn_id, full.tracking_conn_id) == ("tracking_pg", "dmi_tracking")
    assert generic.target.ecr == EcrSettings()


def test_defaults_for_every_optional_key():
    spec = parse("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\n").sections[0]
    assert (spec.source.registry, spec.target.kind, spec.engine.name, spec.selection.platforms,
            spec.transfer.insecure_registries) == ("docker.io", "ecr", "registry", (), ())
    assert (spec.target.registry, spec.target.tag, spec.source.conn_id, spec.target.conn_id) == (None,) * 4
    assert spec.target.ecr == EcrSettings("aws_default", False, "MUTABLE", "AES256", None, None, ())


def test_section_tags_replace_default_tags():
    config = parse("[DEFAULT]\nrefresh = 1w\ntag = latest\nproject = p\n[a]\nimage = a\ntags = 1 2\n[b]\nimage = b\n")
    assert config.section("a").selection.tags == ("1", "2")
    assert config.section("b").selection.tags == ("latest",)


def test_legacy_environment():
    config = parse(SEED, {"AWS_ACCOUNT": "123456789012", "AWS_DEFAULT_REGION": "eu-west-1", "CLOUD": "aws",
                          "DB_PATH": "/data/mirror.db"})
    assert config.env.cloud == "AWS"
    assert config.env.ecr_host() == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert config.env.db_path == "/data/mirror.db"
    assert config.sections[0].target_name() == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/istio/proxyv2")


# -- bad input: each names file:line, section, key, value and what is allowed ----------------------

def test_bad_refresh():
    assert errors("[DEFAULT]\nrefresh = 3x\n[a]\nimage = a\ntag = 1\nproject = p\n") == [
        "config.ini:2: section 'DEFAULT': refresh = '3x': 0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w"
    ]
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\nrefresh = -1d\n") == [
        "config.ini:7: section 'a': refresh = '-1d': 0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w"
    ]
    for bad in ("0m", "1.5h", "1y", "h", "01d"):
        assert errors(f"[DEFAULT]\nrefresh = {bad}\n[a]\nimage = a\ntag = 1\nproject = p\n")


def test_missing_refresh():
    assert errors("[a]\nimage = a\ntag = 1\nproject = p\n") == [
        "config.ini:1: section 'a': refresh: missing: set refresh in [DEFAULT] or here "
        "(0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w)"
    ]


def test_missing_image_tag_project():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nsource-repository = x\n") == [
        "config.ini:3: section 'a': image: missing: every section needs image (the name on the source registry)",
        "config.ini:3: section 'a': tag: missing: set tag (or tags) to the tag(s) to mirror, or a tags-* filter",
        "config.ini:3: section 'a': project: missing: set project (the target repository is project/image)",
    ]


def test_docker_engine_refuses_a_platform_filter():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\nengine = docker\n"
                  "platforms = linux/arm64\n") == [
        "config.ini:8: section 'a': platforms = 'linux/arm64': engine = docker mirrors the daemon's own platform only: "
        "remove platforms, or use engine = registry"]


def test_bad_docker_keys():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\nengine = docker\n"
                  "docker-url = /var/run/docker.sock\nkeep-local-images = sometimes\n") == [
        "config.ini:8: section 'a': docker-url = '/var/run/docker.sock': expected unix:///path/docker.sock, tcp://host:port, "
        "https://host:port or ssh://host",
        "config.ini:9: section 'a': keep-local-images = 'sometimes': expected true or false"]


def test_an_empty_tag_list_is_missing():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\nproject = p\ntags =\n") == [
        "config.ini:6: section 'a': tags = '': missing: set tag (or tags) to the tag(s) to mirror, or a tags-* filter"]


def test_bad_references():
    found = errors("""
        [DEFAULT]
        refresh = 1w
        [a]
        image = Proxy V2
        tag = 1.7.0
        project = istio
        [b]
        image = proxyv2
        source-repository = Istio
        tag = .bad
        project = istio
        [c]
        image = x
        tag = 1
        project = p
        source-registry = http://docker.io
        platforms = amd64
    """)
    assert found == [
        "config.ini:5: section 'a': image = 'Proxy V2': 'Proxy V2' is not a repository path: lowercase letters, digits "
        "and separators (. _ __ -) in components joined by /",
        "config.ini:10: section 'b': source-repository = 'Istio': 'Istio/proxyv2' is not a repository path: lowercase "
        "letters, digits and separators (. _ __ -) in components joined by /",
        "config.ini:11: section 'b': tag = '.bad': '.bad' is not a tag: up to 128 characters of letters, digits, _ . -, "
        "not starting with . or -",
        "config.ini:17: section 'c': source-registry = 'http://docker.io': 'http://docker.io' is not a registry host "
        "(expected host or host:port)",
        "config.ini:18: section 'c': platforms = 'amd64': 'amd64' is not os/arch[/variant], e.g. linux/amd64 or linux/arm/v7",
    ]


def test_unknown_keys_are_errors_with_a_suggestion():
    found = errors("[DEFAULT]\nrefresh = 1w\nrefesh_all = 1\n[a]\nimage = a\ntag = 1\nproject = p\nsource-repo = x\n")
    assert found[0].startswith("config.ini:3: section 'DEFAULT': refesh_all = '1': unknown key; ")
    assert found[1] == "config.ini:8: section 'a': source-repo = 'x': unknown key; did you mean 'source-repository'?"


@pytest.mark.parametrize("cloud", ["aws2", "GOOGLE-CLOUD", "alibaba"])
def test_bad_cloud(cloud):
    assert errors(SEED, {"CLOUD": cloud}) == [f"environment: CLOUD = {cloud.upper()!r}: expected one of: AWS, GOOGLE, "
                                              "GCP, GKE, AZURE (it sets the target of sections that set none)"]


def test_empty_cloud_means_unset():
    assert parse(SEED, {"CLOUD": " "}).env.cloud == "AWS"


def test_bad_account_and_region():
    assert errors(SEED, {"AWS_ACCOUNT": "12345", "AWS_DEFAULT_REGION": "Europe"}) == [
        "environment: AWS_ACCOUNT = '12345': expected a 12-digit AWS account id",
        "environment: AWS_DEFAULT_REGION = 'Europe': expected an AWS region such as us-east-1",
    ]


def test_duplicate_target():
    found = errors(SEED + "\n[copy]\nimage = proxyv2\nsource-repository = istio\nproject = istio\ntag = 1.7.0\n")
    assert found == [
        "config.ini:16: section 'copy': duplicate target <ecr>/istio/proxyv2:1.7.0: section 'aws/proxyv2' writes it too"
    ]


def test_retagging_onto_the_same_target_is_a_duplicate():
    found = errors("""
        [DEFAULT]
        refresh = 1w
        project = p
        image = a
        target-tag = stable
        [one]
        tag = 1
        [two]
        tag = 2
    """)
    assert found == ["config.ini:9: section 'two': duplicate target <ecr>/p/a:stable: section 'one' writes it too"]


def test_section_names_need_not_make_distinct_task_ids():
    # Sections are named by their map index ([a/b] 1), not by task ids: a/b and a_b may live side by side.
    config = parse("[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\n[a/b]\nimage = x\n[a_b]\nimage = y\n")
    assert [s.section for s in config.sections] == ["a/b", "a_b"]


def test_target_key_rules():
    found = errors("""
        [DEFAULT]
        refresh = 1w
        [generic]
        image = a
        tags = 1, 2
        target-tag = stable
        project = p
        target = registry
        scan-on-push = maybe
        [ecr]
        image = b
        tag = 1
        project = p
        target = s3
        encryption = AES256
        kms-key = alias/x
        tag-mutability = sometimes
        lifecycle-policy = nowhere.json
        repository-tags = novalue
    """)
    assert found == [
        "config.ini:4: section 'generic': target-registry: missing: target = registry needs target-registry (host[:port])",
        "config.ini:7: section 'generic': target-tag = 'stable': needs exactly one source tag, this section mirrors 2: 1, 2",
        "config.ini:10: section 'generic': scan-on-push = 'maybe': expected true or false",
        "config.ini:10: section 'generic': scan-on-push = 'maybe': applies only to target = ecr",
        "config.ini:15: section 'ecr': target = 's3': expected one of: ecr, gar, acr, registry",
        "config.ini:17: section 'ecr': kms-key = 'alias/x': needs encryption = KMS",
        "config.ini:18: section 'ecr': tag-mutability = 'sometimes': expected one of: MUTABLE, IMMUTABLE",
        f"config.ini:19: section 'ecr': lifecycle-policy = 'nowhere.json': no such file: {Path.cwd() / 'nowhere.json'}",
        "config.ini:20: section 'ecr': repository-tags = 'novalue': 'novalue': expected key=value (key 1-128, value up to "
        "256 characters)",
    ]


def test_lifecycle_policy_must_be_json_with_rules(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "norules.json").write_text('{"x": 1}')
    (tmp_path / "config.ini").write_text(
        "[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\n"
        "[a]\nimage = a\nlifecycle-policy = bad.json\n[b]\nimage = b\nlifecycle-policy = norules.json\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config.ini", {})
    a, b = (str(i) for i in exc.value.issues)
    assert a.startswith(f"{tmp_path}/config.ini:7: section 'a': lifecycle-policy = 'bad.json': {tmp_path}/bad.json is not JSON")
    assert b == (f"{tmp_path}/config.ini:10: section 'b': lifecycle-policy = 'norules.json': {tmp_path}/norules.json: "
                 "expected a JSON object with a \"rules\" list")


def test_all_errors_of_a_file_are_reported_together():
    with pytest.raises(ConfigError) as exc:
        parse("[DEFAULT]\nrefresh = soon\n[a]\ntag = 1\nproject = p\n[b]\nimage = B\ntag = 1\nproject = p\n",
              {"CLOUD": "ibm"})
    assert len(exc.value.issues) == 4
    assert str(exc.value).startswith("4 problems in the mirror configuration:\n  environment: CLOUD = 'IBM'")


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.ini: no such file"):
        load_config(tmp_path / "missing.ini", {})
    assert errors("") == ["config.ini: no image sections: nothing to mirror (see README, 'config.ini')"]
    assert errors("image = a\n") == ["config.ini:1: text before the first [section] header"]
    assert errors("[a]\nimage = a\n[a]\nimage = b\n") == ["config.ini:3: section 'a': section appears twice"]
    assert errors("[a]\nimage = a\nimage = b\n") == ["config.ini:3: section 'a': image: key appears twice in the section"]
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\njust words\n") == ["config.ini:4: not an ini line: 'just words'"]


# -- the security review's findings ---------------------------------------------------------------------
def test_without_a_default_refresh_each_section_picks_its_dag():
    config = parse("[alpine]\nimage = alpine\ntag = 3\nproject = p\nrefresh = 1h\n"
                   "[nginx]\nimage = nginx\ntag = 1\nproject = p\nrefresh = 1w\n[once]\nimage = x\ntag = 1\n"
                   "project = p\nrefresh = 0\n")
    assert {name: [s.section for s in specs] for name, specs in config.dags().items()} == {
        "dmi_mirror_1h": ["alpine"], "dmi_mirror_1w": ["nginx"], "dmi_mirror_once": ["once"]}


def test_a_huge_refresh_is_one_clear_error_among_the_others():
    found = errors("[DEFAULT]\nrefresh = 99999999999999999999w\n[a]\nimage = A\ntag = 1\nproject = p\n")
    assert found == [
        "config.ini:2: section 'DEFAULT': refresh = '99999999999999999999w': at most 520w (about 10 years); use 0 to "
        "mirror once",
        "config.ini:4: section 'a': image = 'A': 'A' is not a repository path: lowercase letters, digits and separators "
        "(. _ __ -) in components joined by /"]
    assert parse("[DEFAULT]\nrefresh = 520w\n[a]\nimage = a\ntag = 1\nproject = p\n").default_refresh.text == "520w"


def test_lifecycle_policy_stays_beside_the_config(tmp_path):
    import os

    folder = tmp_path / "conf"
    folder.mkdir()
    (tmp_path / "outside.json").write_text('{"rules": []}')
    (folder / "big.json").write_text('{"rules": [], "pad": "' + "x" * 40000 + '"}')
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo.json")  # opening it would block the DAG parser forever
    config = folder / "config.ini"
    cases = {"a": "/proc/self/status", "b": "../outside.json", "c": "fifo.json", "d": "/dev/zero", "e": "big.json",
             "f": "sub"}
    config.write_text("[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\n" + "".join(
        f"[{name}]\nimage = {name}\nlifecycle-policy = {value}\n" for name, value in cases.items()))
    with pytest.raises(ConfigError) as exc:
        load_config(config, {})
    found = {i.section: i.message for i in exc.value.issues}
    assert found["a"].endswith(f"/status is outside the config's folder {folder}: keep policy files beside config.ini")
    assert found["b"].startswith(f"{tmp_path / 'outside.json'} is outside the config's folder")
    assert found["c"] == f"{folder / 'fifo.json'} is not a regular file"
    assert found["d"].startswith("/dev/zero is outside the config's folder")
    assert found["e"] == f"{folder / 'big.json'} has {(folder / 'big.json').stat().st_size} bytes; a policy " \
                         "file has at most 30720"
    assert found["f"] == f"{folder / 'sub'} is not a regular file"


@pytest.mark.parametrize("text", ["ü٣", "1.0\n", "a" * 129, "٣"])
def test_tags_are_ascii_and_whole(text):
    from dmi_provider.registry.reference import InvalidReference, check_tag

    with pytest.raises(InvalidReference):
        check_tag(text)


@pytest.mark.parametrize("text", ["reg.example.com\n", "rég.example.com", "reg.example.com:5000\n"])
def test_hosts_are_ascii_and_whole(text):
    from dmi_provider.registry.reference import InvalidReference, check_host

    with pytest.raises(InvalidReference):
        check_host(text)


def test_connection_ids_are_plain():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\nsource-conn-id = \"x\"\n") == [
        "config.ini:7: section 'a': source-conn-id = '\"x\"': expected an Airflow connection id (letters, digits, _ . -)"]


def test_a_ca_bundle_that_is_a_fifo_is_refused_without_opening_it(tmp_path):
    # Opening a FIFO blocks until a writer comes: dmi validate, and so DAG parsing, would hang.
    import os

    from dmi_provider.registry.network import check_ca_bundle

    os.mkfifo(tmp_path / "ca.pem")
    (tmp_path / "config.ini").write_text("[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\n"
                                         "[a]\nimage = a\nsource-ca-bundle = ca.pem\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config.ini", {})
    assert [str(i).removeprefix(f"{tmp_path}/") for i in exc.value.issues] == [
        f"config.ini:7: section 'a': source-ca-bundle = 'ca.pem': CA bundle '{tmp_path}/ca.pem' is not a regular "
        "file: give a PEM file with the CA's certificate"]
    with pytest.raises(ValueError, match="not a regular file"):  # a connection's ca_bundle extra
        check_ca_bundle(str(tmp_path / "ca.pem"))


def test_proxy_and_ca_bundle_keys(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "empty.pem").write_text("nothing here\n")
    (tmp_path / "config.ini").write_text(textwrap.dedent("""\
        [DEFAULT]
        refresh = 1w
        project = p
        tag = 1
        source-proxy = http://proxy.corp:3128
        [good]
        image = a
        source-ca-bundle = ca.pem
        target-ca-bundle = ca.pem
        target = registry
        target-registry = registry.corp
        [bad]
        image = b
        target-proxy = http://user:secret@proxy.corp:3128
        source-ca-bundle = missing.pem
        target-ca-bundle = empty.pem
        [worse]
        image = c
        source-proxy = proxy.corp:3128
        target-proxy = http://proxy.corp:3128/path
        [daemon]
        image = d
        engine = docker
        source-ca-bundle = ca.pem
    """))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config.ini", {})
    found = [str(i).removeprefix(f"{tmp_path}/") for i in exc.value.issues]
    assert "secret" not in str(exc.value)
    assert found == [
        "config.ini:14: section 'bad': target-proxy = 'http://***@proxy.corp:3128': no credentials in config.ini: put the proxy URL with its user and password in the registry connection's `proxy` extra, or in HTTPS_PROXY",
        f"config.ini:15: section 'bad': source-ca-bundle = 'missing.pem': CA bundle '{tmp_path}/missing.pem' cannot be read (No such file or directory): give a PEM file with the CA's certificate",
        f"config.ini:16: section 'bad': target-ca-bundle = 'empty.pem': CA bundle '{tmp_path}/empty.pem' holds no PEM certificate (-----BEGIN CERTIFICATE----- ...)",
        "config.ini:19: section 'worse': source-proxy = 'proxy.corp:3128': proxy 'proxy.corp:3128' is not a proxy URL: write http://host:port (or http://user:password@host:port)",
        "config.ini:20: section 'worse': target-proxy = 'http://proxy.corp:3128/path': proxy 'http://proxy.corp:3128/path' has a path: write http://host:port",
        "config.ini:24: section 'daemon': source-ca-bundle = 'ca.pem': engine = docker reaches registries through the daemon, which has its own proxy and CA settings (dockerd's HTTPS_PROXY, /etc/docker/certs.d): remove it, or use engine = registry",
    ]
    ca.write_text(ca.read_text())  # the good section alone parses, with absolute paths
    (tmp_path / "config.ini").write_text((tmp_path / "config.ini").read_text().split("[bad]")[0])
    (good,) = load_config(tmp_path / "config.ini", {}).sections
    assert (good.source.proxy, good.source.ca_bundle, good.target.ca_bundle, good.target.proxy) == (
        "http://proxy.corp:3128", str(ca), str(ca), None)


def test_pull_reserve_and_source_pool():
    found = errors("[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\n[a]\nimage = a\npull-reserve = 150%\n"
                   "[b]\nimage = b\npull-reserve = lots\nsource-pool = my pool!\n[c]\nimage = c\npull-reserve = -5\n")
    assert found == [
        "config.ini:7: section 'a': pull-reserve = '150%': a percentage from 0% to 100%, e.g. 10%",
        "config.ini:10: section 'b': pull-reserve = 'lots': a percentage from 0% to 100%, e.g. 10%",
        "config.ini:11: section 'b': source-pool = 'my pool!': an Airflow pool name: letters, digits, _ . - (up to 256)",
        "config.ini:14: section 'c': pull-reserve = '-5': a percentage from 0% to 100%, e.g. 10%",
    ]
    config = parse("[DEFAULT]\nrefresh = 1w\nproject = p\ntag = 1\npull-reserve = 12.5\n[a]\nimage = a\n"
                   "source-registry = registry.local:5000\n[b]\nimage = b\nsource-pool = hub_pool\npull-reserve = 0%\n")
    a, b = config.sections
    assert (a.budget.pull_reserve, a.budget.pool) == (12.5, "dmi_registry_local_5000")
    assert (b.budget.pull_reserve, b.budget.pool) == (0.0, "hub_pool")


def test_section_spec_reads_keys_given_in_code_as_a_file_would():
    from dmi_provider.config import section_spec

    spec = section_spec({"image": "proxyv2", "source-repository": "istio", "tags": "1.7.0, 1.8.0", "project": "istio",
                         "aws-conn-id": "aws_mirror"}, section="proxyv2", environ={})
    assert (spec.section, spec.source.name, spec.target.repository) == ("proxyv2", "docker.io/istio/proxyv2",
                                                                         "istio/proxyv2")
    assert spec.pairs() == (("1.7.0", "1.7.0"), ("1.8.0", "1.8.0")) and spec.target.ecr.conn_id == "aws_mirror"
    with pytest.raises(ConfigError) as exc:
        section_spec({"image": "x", "tag": "1", "project": "p", "scan-on-push": "maybe", "sacn-on-push": "1"},
                     environ={})
    assert [str(i) for i in exc.value.issues] == [
        "operator arguments: section 'mirror': sacn-on-push = '1': unknown key; did you mean 'scan-on-push'?",
        "operator arguments: section 'mirror': scan-on-push = 'maybe': expected true or false"]


def test_an_empty_refresh_is_named_not_dropped():
    assert errors("[DEFAULT]\nrefresh = 1w\n[a]\nimage = a\ntag = 1\nproject = p\nrefresh =\n") == [
        "config.ini:7: section 'a': refresh: missing: set refresh in [DEFAULT] or here (0 (once) or N followed by m, "
        "h, d or w, e.g. 30m, 6h, 1d, 1w)"]
    assert errors("[a]\nimage = a\ntag = 1\nproject = p\nrefresh = soon\n") == [
        "config.ini:5: section 'a': refresh = 'soon': 0 (once) or N followed by m, h, d or w, e.g. 30m, 6h, 1d, 1w"]


def test_section_spec_gives_a_docker_section_its_queue():
    from dmi_provider.config import section_spec

    spec = section_spec({"image": "x", "tag": "1", "project": "p", "engine": "docker", "docker-queue": "qa qb"},
                        environ={})
    assert (spec.engine.queues, spec.engine.queue) == (("qa", "qb"), "qa")
