"""config.ini for Google Artifact Registry, Azure Container Registry and cloud sources: CLOUD picks the target,
each cloud key is validated and applies only to its target, a missing extra names the pip line."""

from __future__ import annotations

import json
import textwrap

import pytest

from dmi_provider import config_rules
from dmi_provider.config import ConfigError, load_config
from dmi_provider.pipeline import MirrorRun
from tests.unit.test_config import errors, parse

ORIGINAL = """\
[DEFAULT]
refresh = 1w

[proxyv2]
image = proxyv2
tag = 1.7.0
source-repository = istio
project = istio
"""


@pytest.mark.parametrize(("cloud", "target", "name"), [
    ("AWS", "ecr", "<ecr>/istio/proxyv2"),
    ("GOOGLE", "gar", "us-docker.pkg.dev/<project>/mirror/istio/proxyv2"),
    ("gcp", "gar", "us-docker.pkg.dev/<project>/mirror/istio/proxyv2"),
    ("GKE", "gar", "us-docker.pkg.dev/<project>/mirror/istio/proxyv2"),
    ("Azure", "acr", "<acr>/istio/proxyv2"),
])
def test_cloud_sets_the_target_of_the_original_format(cloud, target, name):
    config = parse(ORIGINAL, {"CLOUD": cloud})
    spec = config.sections[0]
    assert (spec.target.kind, spec.target_name()) == (target, name)
    assert config.env.cloud == {"GCP": "GOOGLE", "GKE": "GOOGLE"}.get(cloud.upper(), cloud.upper())


def test_a_section_target_wins_over_cloud():
    spec = parse(ORIGINAL.replace("project = istio", "project = istio\ntarget = ecr"), {"CLOUD": "GOOGLE"}).sections[0]
    assert spec.target.kind == "ecr"


def test_gar_settings_and_target_path(tmp_path):
    (tmp_path / "cleanup.json").write_text(json.dumps({"keep-5": {"id": "keep-5", "action": "KEEP",
                                                                  "mostRecentVersions": {"keepCount": 5}}}))
    (tmp_path / "config.ini").write_text(ORIGINAL + textwrap.dedent("""\
        target = gar
        gar-location = europe-west3
        gar-project = my-project-1
        gar-repository = dockerhub
        gar-immutable-tags = true
        gar-kms-key-name = projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k
        gar-labels = team=platform, env=prod
        gar-description = Docker Hub mirror
        gar-cleanup-policies = cleanup.json
        gcp-conn-id = gcp_mirror
        """))
    spec = load_config(tmp_path / "config.ini", {}).sections[0]
    assert spec.target_name() == "europe-west3-docker.pkg.dev/my-project-1/dockerhub/istio/proxyv2"
    gar = spec.target.gar
    assert (gar.conn_id, gar.immutable_tags, gar.labels, gar.description) == (
        "gcp_mirror", True, (("team", "platform"), ("env", "prod")), "Docker Hub mirror")
    assert json.loads(gar.cleanup_policies.text)["keep-5"]["action"] == "KEEP"
    assert gar.cleanup_policies.path == str(tmp_path / "cleanup.json")
    _src, dst = MirrorRun(spec).references("europe-west3-docker.pkg.dev", "my-project-1/dockerhub")[0]
    assert str(dst) == "europe-west3-docker.pkg.dev/my-project-1/dockerhub/istio/proxyv2:1.7.0"


def test_acr_name_makes_the_host():
    spec = parse(ORIGINAL + "target = acr\nacr-name = MyMirror01\nupload-chunk-size = 4MiB\n").sections[0]
    assert spec.target_name() == "mymirror01.azurecr.io/istio/proxyv2"
    assert spec.transfer.upload_chunk_size == 4 * 1024 * 1024


def test_bad_cloud_values_name_file_section_key_and_what_is_allowed():
    text = ORIGINAL + textwrap.dedent("""\
        target = gar
        gar-location = Europe West
        gar-project = P
        gar-repository = -mirror
        gar-kms-key-name = my-key
        gar-labels = Team=x
        gar-api-endpoint = ftp://x
        """)
    assert errors(text) == [
        "config.ini:10: section 'proxyv2': gar-location = 'Europe West': expected a GAR location such as us, europe "
        "or europe-west3",
        "config.ini:11: section 'proxyv2': gar-project = 'P': expected a Google Cloud project id (6-30 lowercase "
        "letters, digits, hyphens)",
        "config.ini:12: section 'proxyv2': gar-repository = '-mirror': expected an Artifact Registry repository id "
        "(lowercase letters, digits, hyphens, at most 63)",
        "config.ini:13: section 'proxyv2': gar-kms-key-name = 'my-key': expected "
        "projects/P/locations/L/keyRings/R/cryptoKeys/K",
        "config.ini:14: section 'proxyv2': gar-labels = 'Team=x': 'Team=x': expected key=value (Google labels: "
        "lowercase letters, digits, _ and -, keys start with a letter, at most 63 each)",
        "config.ini:15: section 'proxyv2': gar-api-endpoint = 'ftp://x': expected a host, host:port or "
        "http(s)://host:port",
    ]


def test_acr_and_chunk_size_errors():
    assert errors(ORIGINAL + "target = acr\nacr-name = my-registry\nupload-chunk-size = 10KiB\n") == [
        "config.ini:10: section 'proxyv2': acr-name = 'my-registry': expected an ACR registry name: 5-50 letters and "
        "digits",
        "config.ini:11: section 'proxyv2': upload-chunk-size = '10KiB': 0 (one PUT per blob) or a chunk size from "
        "64KiB to 1GiB, e.g. 8MiB",
    ]


def test_a_cloud_key_in_another_target_section_is_an_error():
    assert errors(ORIGINAL + "gar-repository = mirror\nacr-name = mirror01\n") == [
        "config.ini:9: section 'proxyv2': gar-repository = 'mirror': applies only to target = gar",
        "config.ini:10: section 'proxyv2': acr-name = 'mirror01': applies only to target = acr",
    ]
    assert errors(ORIGINAL + "target = gar\nupload-chunk-size = 8MiB\n") == [
        "config.ini:10: section 'proxyv2': upload-chunk-size = '8MiB': applies only to target = ecr or acr or registry"]


def test_defaults_serve_the_sections_they_apply_to():
    defaults = ORIGINAL.replace("refresh = 1w", "refresh = 1w\ngar-repository = hub\nacr-name = mirror01")
    text = defaults + textwrap.dedent("""\
        [pilot]
        image = pilot
        tag = 1.7.0
        project = istio
        target = gar
        """)
    first, second = parse(text).sections
    assert (first.target.kind, second.target.gar.repository) == ("ecr", "hub")


def test_a_cloud_source_needs_its_host():
    assert errors(ORIGINAL + "source = ecr\n") == [
        "config.ini:4: section 'proxyv2': source-registry: missing: source = ecr needs source-registry: the ECR "
        "host, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
    spec = parse(ORIGINAL + "source = gar\nsource-registry = europe-west3-docker.pkg.dev\nsource-conn-id = gcp\n"
                 ).sections[0]
    assert (spec.source.kind, spec.source.name, spec.source.conn_id) == (
        "gar", "europe-west3-docker.pkg.dev/istio/proxyv2", "gcp")
    assert errors(ORIGINAL + "source = s3\n") == [
        "config.ini:9: section 'proxyv2': source = 's3': expected one of: registry, ecr, gar, acr"]


def test_gar_sections_in_different_repositories_do_not_collide():
    text = ORIGINAL + "target = gar\ngar-repository = one\n" + textwrap.dedent("""\
        [again]
        image = proxyv2
        tag = 1.7.0
        source-repository = istio
        project = istio
        target = gar
        gar-repository = two
        """)
    assert len(parse(text).sections) == 2
    assert errors(text.replace("gar-repository = two", "gar-repository = one")) == [
        "config.ini:11: section 'again': duplicate target us-docker.pkg.dev/<project>/one/istio/proxyv2:1.7.0: section "
        "'proxyv2' writes it too"]


@pytest.mark.parametrize(("target", "extra"), [("gar", "google"), ("acr", "azure")])
def test_a_missing_extra_names_the_pip_line(monkeypatch, target, extra):
    monkeypatch.setattr(config_rules, "_installed", lambda module: not module.startswith(("google", "azure")))
    assert errors(ORIGINAL + f"target = {target}\n") == [
        f"config.ini:9: section 'proxyv2': target = '{target}': target = {target} needs the {extra} extra: pip "
        f"install 'airflow-provider-dmi[{extra}]'"]
    assert errors(ORIGINAL + f"source = {target}\nsource-registry = r.example\n") == [
        f"config.ini:9: section 'proxyv2': source = '{target}': source = {target} needs the {extra} extra: pip "
        f"install 'airflow-provider-dmi[{extra}]'"]
    assert parse(ORIGINAL).sections[0].target.kind == "ecr"  # an ECR-only install needs neither


def test_cleanup_policies_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"p": {"action": "ERASE"}}')
    (tmp_path / "config.ini").write_text(ORIGINAL + "target = gar\ngar-cleanup-policies = bad.json\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config.ini", {})
    (issue,) = exc.value.issues
    assert str(issue).startswith(f"{tmp_path / 'config.ini'}:10: section 'proxyv2': gar-cleanup-policies = "
                                 f"'bad.json': {tmp_path / 'bad.json'}: expected the API's cleanupPolicies object")
