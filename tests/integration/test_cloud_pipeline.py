"""Google, Azure and cloud to cloud through the Airflow pipeline: dag.test() of the DAG folder's dmi_mirror.py,
connections as Airflow reads them (AIRFLOW_CONN_*), history rows in the tracking database, skopeo the oracle."""

from __future__ import annotations

import itertools
import json
import textwrap

from dmi_provider.tracking.store import TrackingStore
from tests.rig.client import RigClient
from tests.rig.fixtures import HUB_USER, azure_connection, gcp_connection, rig_client
from tests.rig.images import push
from tests.rig.services import MOTO_REGION
from tests.rig.skopeo import inspect_raw

_ns = itertools.count(1)
ORIGINAL = """
    [proxyv2]
    image = proxyv2
    tag = 1.7.0
    source-repository = {ns}istio
    project = {ns}istio

    [pilot]
    image = pilot
    tag = 1.7.0
    source-repository = {ns}istio
    project = {ns}istio
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def seed_hub(hub_registry, factory, ns: str) -> dict:
    images = {"proxyv2": factory.image(), "pilot": factory.multiarch(base=factory.layer())}
    for name, artifact in images.items():
        push(rig_client(hub_registry, HUB_USER), f"{ns}istio/{name}", "1.7.0", artifact)
    return images


def test_original_format_with_cloud_google_and_cloud_azure(airflow_env, hub, hub_registry, google, azure, factory,
                                                           tmp_path):
    ns = f"c{next(_ns)}"
    images = seed_hub(hub_registry, factory, ns)
    db = tmp_path / "tracking.db"
    google_config = write(tmp_path, "google.ini", f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        insecure-registries = {hub.host}, {google.host}
        target-registry = {google.host}
        gar-location = europe-west3
        gar-api-endpoint = {google.url}
    """ + ORIGINAL.format(ns=ns))
    env = {"CLOUD": "GOOGLE", "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": gcp_connection(google), "DB_PATH": str(db)}
    run = airflow_env.run("dmi_mirror", google_config, env=env)
    assert run["state"] == "success", run["log"][-5000:]
    assert f"projects/{google.project}/locations/europe-west3/repositories/mirror" in google.repositories
    for name, artifact in images.items():
        reference = f"{google.host}/{google.project}/mirror/{ns}istio/{name}:1.7.0"
        assert inspect_raw(reference, google.mint()) == artifact.manifest

    principal = azure.entra.add_principal()
    azure_config = write(tmp_path, "azure.ini", f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        insecure-registries = {hub.host}, {azure.host}
        target-registry = {azure.host}
    """ + ORIGINAL.format(ns=ns))
    env = {"CLOUD": "AZURE", "AIRFLOW_CONN_AZURE_DEFAULT": azure_connection(azure, principal), "DB_PATH": str(db)}
    run = airflow_env.run("dmi_mirror", azure_config, env=env)
    assert run["state"] == "success", run["log"][-5000:]
    for name, artifact in images.items():
        assert inspect_raw(f"{azure.host}/{ns}istio/{name}:1.7.0", azure.admin) == artifact.manifest

    rows = TrackingStore(f"sqlite:///{db}").history()
    assert sorted((r["target_kind"], r["status"]) for r in rows) == [("acr", "copied")] * 2 + [("gar", "copied")] * 2
    assert {r["target"] for r in rows} == {f"{google.host}/{google.project}/mirror/{ns}istio/proxyv2:1.7.0",
                                           f"{google.host}/{google.project}/mirror/{ns}istio/pilot:1.7.0",
                                           f"{azure.host}/{ns}istio/proxyv2:1.7.0",
                                           f"{azure.host}/{ns}istio/pilot:1.7.0"}
    assert all(r["target_digest"] == images[r["target"].split("/")[-1].split(":")[0]].digest for r in rows)


def test_mixed_clouds_and_cloud_to_cloud_in_one_dag(airflow_env, hub, hub_registry, ecr, ecr_env, google, azure,
                                                    open_registry, factory, tmp_path):
    ns = f"m{next(_ns)}"
    hub_image = factory.image()
    push(rig_client(hub_registry, HUB_USER), f"{ns}/app", "1.0", hub_image)
    # Images already in each cloud, to be mirrored from there.
    in_ecr, in_gar, in_acr = factory.image(), factory.multiarch(base=factory.layer()), factory.image(media="oci")
    push(rig_client(ecr.registry, ecr.registry.credentials), f"{ns}/from-ecr", "2.0", in_ecr)
    gar_path = google.add_repository("seeded")
    gar_client = RigClient(f"http://{google.host}", google.mint())
    push(gar_client, f"{gar_path}/{ns}/from-gar", "3.0", in_gar)
    push(RigClient(f"http://{azure.host}", azure.admin), f"{ns}/from-acr", "4.0", in_acr)
    principal = azure.entra.add_principal()

    config = write(tmp_path, "config.ini", f"""
        [DEFAULT]
        refresh = 1w
        insecure-registries = {hub.host}, {ecr.registry.host}, {google.host}, {azure.host}, {open_registry.host}
        gar-location = europe-west3
        gar-api-endpoint = {google.url}

        [hub-to-ecr]
        source-registry = {hub.host}
        image = {ns}/app
        tag = 1.0
        project = hub
        target-registry = {ecr.registry.host}

        [hub-to-gar]
        source-registry = {hub.host}
        image = {ns}/app
        tag = 1.0
        project = hub
        target = gar
        target-registry = {google.host}

        [hub-to-acr]
        source-registry = {hub.host}
        image = {ns}/app
        tag = 1.0
        project = hub
        target = acr
        target-registry = {azure.host}

        [ecr-to-gar]
        source = ecr
        source-registry = {ecr.registry.host}
        image = {ns}/from-ecr
        tag = 2.0
        project = from-aws
        target = gar
        target-registry = {google.host}
        gar-repository = copies

        [gar-to-acr]
        source = gar
        source-registry = {google.host}
        source-repository = {gar_path}
        image = {ns}/from-gar
        tag = 3.0
        project = from-google
        target = acr
        target-registry = {azure.host}

        [acr-to-registry]
        source = acr
        source-registry = {azure.host}
        source-conn-id = acr_admin
        image = {ns}/from-acr
        tag = 4.0
        project = from-azure
        target = registry
        target-registry = {open_registry.host}
    """)
    env = ecr_env | {
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": gcp_connection(google),
        "AIRFLOW_CONN_AZURE_DEFAULT": azure_connection(azure, principal),
        "AIRFLOW_CONN_ACR_ADMIN": json.dumps({"conn_type": "azure_container_registry", "login": azure.admin[0],
                                              "password": azure.admin[1]}),
    }
    assert ecr_env["AWS_DEFAULT_REGION"] == MOTO_REGION
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "success", run["log"][-6000:]
    assert set(run["tasks"].values()) == {"success"}

    expected = {
        f"{ecr.registry.host}/hub/{ns}/app:1.0": (hub_image, ecr.registry.credentials, "ecr"),
        f"{google.host}/{google.project}/mirror/hub/{ns}/app:1.0": (hub_image, google.mint(), "gar"),
        f"{azure.host}/hub/{ns}/app:1.0": (hub_image, azure.admin, "acr"),
        f"{google.host}/{google.project}/copies/from-aws/{ns}/from-ecr:2.0": (in_ecr, google.mint(), "gar"),
        f"{azure.host}/from-google/{ns}/from-gar:3.0": (in_gar, azure.admin, "acr"),
        f"{open_registry.host}/from-azure/{ns}/from-acr:4.0": (in_acr, None, "registry"),
    }
    for reference, (artifact, creds, _kind) in expected.items():
        assert inspect_raw(reference, creds) == artifact.manifest, reference
    rows = TrackingStore(f"sqlite:///{ecr_env['DB_PATH']}").history()
    assert {r["target"]: (r["status"], r["target_kind"], r["target_digest"]) for r in rows} == {
        ref: ("copied", kind, artifact.digest) for ref, (artifact, _creds, kind) in expected.items()}


def test_cloud_bad_input_fails_its_section_with_one_line_and_a_history_row(airflow_env, hub, hub_registry, google,
                                                                           azure, factory, tmp_path):
    ns = f"b{next(_ns)}"
    push(rig_client(hub_registry, HUB_USER), f"{ns}/app", "1.0", factory.image())
    principal = azure.entra.add_principal()
    config = write(tmp_path, "config.ini", f"""
        [DEFAULT]
        refresh = 1w
        source-registry = {hub.host}
        insecure-registries = {hub.host}, {google.host}, {azure.host}
        image = {ns}/app
        tag = 1.0

        [gar-nowhere]
        project = a
        target = gar
        target-registry = {google.host}
        gar-location = moon-east9
        gar-api-endpoint = {google.url}

        [acr-no-connection]
        project = b
        target = acr
        target-registry = {azure.host}
        azure-conn-id = acr_missing

        [acr-fine]
        project = c
        target = acr
        target-registry = {azure.host}
    """)
    db = tmp_path / "tracking.db"
    env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": gcp_connection(google), "DB_PATH": str(db),
           "AIRFLOW_CONN_AZURE_DEFAULT": azure_connection(azure, principal)}
    run = airflow_env.run("dmi_mirror", config, env=env)
    assert run["state"] == "failed"
    steps = {name.split("]")[0][1:]: step for name, step in run["steps"].items()}
    assert steps["gar-nowhere"]["ensure_repository"] == "failed"
    assert steps["acr-no-connection"]["pull"] == "failed"  # planning failed too; the pull task tried again
    assert steps["acr-fine"]["record"] == "success"
    assert ("section 'gar-nowhere': DmiError: Google Cloud (connection 'google_cloud_default'), location moon-east9: "
            "cannot create or check repository") in run["log"]
    assert ("section 'acr-no-connection': DmiError: connection 'acr_missing' does not exist: create it (type azure "
            "with a service principal") in run["log"]
    rows = {r["section"]: r for r in TrackingStore(f"sqlite:///{db}").history()}
    assert rows["acr-fine"]["status"] == "copied"
    assert rows["gar-nowhere"]["status"] == rows["acr-no-connection"]["status"] == "failed"
    assert "location 'moon-east9' is not a valid location" in rows["gar-nowhere"]["error"]
    assert rows["acr-no-connection"]["error"].startswith("DmiError: connection 'acr_missing' does not exist")
    assert principal[1] not in run["log"] and "PRIVATE KEY" not in json.dumps(rows, default=str)
