"""Google Artifact Registry and Azure Container Registry, as targets and as sources, through the same code
the operators run (MirrorRun: plan, ensure_repository, transfer, after_push). The real google-auth,
google-cloud-artifact-registry and azure-identity talk to the stand-ins of tests/rig (gcp.py, azure.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dmi_provider.config_keys import PolicyFile
from dmi_provider.errors import DmiError
from dmi_provider.pipeline import MirrorRun, Pushed, RunHooks
from dmi_provider.registry.errors import RegistryError
from dmi_provider.spec import AcrSettings, GarSettings, MirrorSpec, SelectionSpec, SourceSpec, TargetSpec, TransferSpec
from dmi_provider.targets import make_target
from tests.rig.client import RigClient
from tests.rig.fixtures import azure_connection, gcp_connection, rig_client
from tests.rig.images import push
from tests.rig.skopeo import inspect_raw

LOCATION = "europe-west3"


def gar_job(google, source, repo: str, conn_id: str = "gcp_test", **settings: object) -> MirrorSpec:
    gar = GarSettings(conn_id=conn_id, location=LOCATION, api_endpoint=google.url, **settings)  # type: ignore[arg-type]
    return MirrorSpec(section="gar-section", source=SourceSpec(registry=source.host, repository=repo),
                      target=TargetSpec(kind="gar", registry=google.host, repository=f"mirror/{repo}", gar=gar),
                      selection=SelectionSpec(tags=("1.0",)),
                      transfer=TransferSpec(insecure_registries=(source.host, google.host)))


def acr_job(azure, source, repo: str, conn_id: str = "az_test", chunk: int | None = None) -> MirrorSpec:
    return MirrorSpec(section="acr-section", source=SourceSpec(registry=source.host, repository=repo),
                      target=TargetSpec(kind="acr", registry=azure.host, repository=f"mirror/{repo}",
                                        acr=AcrSettings(conn_id=conn_id)),
                      selection=SelectionSpec(tags=("1.0",)),
                      transfer=TransferSpec(insecure_registries=(source.host, azure.host), upload_chunk_size=chunk))


def mirror(job: MirrorSpec, lines: list[str] | None = None) -> list:
    """What the pull, tag, ensure_repository and push tasks do, in one process."""
    run, pushed = MirrorRun(job, hooks=RunHooks(say=(lines if lines is not None else []).append)), Pushed()
    try:
        run.run_all(pushed=pushed)
        return pushed.copies
    finally:
        run.close()


# -- Google Artifact Registry ----------------------------------------------------------------------------
def test_gar_creates_its_repository_then_copies_byte_exact_with_single_puts(google, open_registry, factory,
                                                                            repo_name, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_GCP_TEST", gcp_connection(google))
    artifact = factory.image(layers=[factory.layer(300 * 1024), factory.layer()])
    repo = repo_name("gar")
    push(rig_client(open_registry), repo, "1.0", artifact)
    policies = {"keep": {"id": "keep", "action": "KEEP", "mostRecentVersions": {"keepCount": 3}}}
    job = gar_job(google, open_registry, repo, repository="created-here", immutable_tags=True,
                  labels=(("team", "platform"),), description="Hub mirror",
                  kms_key_name="projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k",
                  cleanup_policies=PolicyFile("cleanup.json", json.dumps(policies)))

    target = make_target(job)
    before = target.check_repository(job.target.repository)
    assert not before.exists and before.note.endswith("repositories/created-here would be created")
    outcome = target.ensure_repository(job.target.repository)
    assert outcome.created and outcome.differences == ()
    name = f"projects/{google.project}/locations/{LOCATION}/repositories/created-here"
    made = google.repositories[name]
    assert made["format"] in ("DOCKER", 1) and made["dockerConfig"] == {"immutableTags": True}
    assert made["labels"] == {"team": "platform"} and made["description"] == "Hub mirror"
    assert made["kmsKeyName"].endswith("cryptoKeys/k") and made["cleanupPolicies"]["keep"]["action"] in ("KEEP", 2)
    calls = len(google.api_calls)
    again = make_target(job).ensure_repository("mirror/other")  # one AR repository per process, asked once
    assert again.exists and not again.created
    assert len(google.api_calls) == calls

    results = mirror(job)
    assert [r.status for r in results] == ["copied"]
    reference = f"{google.host}/{google.project}/created-here/mirror/{repo}:1.0"
    token = make_target(job).endpoint().login()
    assert token is not None and token.username == "oauth2accesstoken"
    assert inspect_raw(reference, (token.username, token.password)) == artifact.manifest
    assert results[0].target == reference


def test_gar_refuses_pushes_outside_a_repository_it_has(google, open_registry, factory, repo_name, monkeypatch):
    # The stand-in is GAR: images are created on push only inside an existing AR repository.
    monkeypatch.setenv("AIRFLOW_CONN_GCP_TEST", gcp_connection(google))
    repo = repo_name("gar")
    push(rig_client(open_registry), repo, "1.0", factory.image())
    job = gar_job(google, open_registry, repo, repository="never-made")
    run = MirrorRun(job, hooks=RunHooks(say=lambda _: None))
    try:
        pulled = run.plan(force=False, dry_run=False)
        with pytest.raises(RegistryError, match=r"HTTP 401 UNAUTHORIZED"):
            run.transfer(pulled, Pushed())
    finally:
        run.close()


def test_gar_access_token_expiring_mid_copy_is_refreshed(google, open_registry, factory, repo_name, monkeypatch,
                                                        proxy_factory):
    monkeypatch.setenv("AIRFLOW_CONN_GCP_TEST", gcp_connection(google))
    monkeypatch.setattr(google, "token_lifetime", 2)  # google-auth refreshes what is this close to expiry
    tokens = google.registry.token_server
    monkeypatch.setattr(tokens, "expires_in", 2)
    monkeypatch.setattr(tokens, "claimed_expires_in", 3600)  # DMI holds its registry tokens until refused
    slow = proxy_factory(google.registry)
    slow.latency = 0.25  # a far-away registry: the copy outlives the tokens it started with
    artifact = factory.image(layers=[factory.layer() for _ in range(8)])
    repo = repo_name("gar")
    push(rig_client(open_registry), repo, "1.0", artifact)
    google.add_repository("mirror")
    job = gar_job(google, open_registry, repo)
    job = dataclasses.replace(job, target=dataclasses.replace(job.target, registry=slow.host),
                              transfer=TransferSpec(insecure_registries=(open_registry.host, slow.host)))
    grants, issued = google.grants, len(tokens.issued)

    assert [r.status for r in mirror(job)] == ["copied"]
    assert google.grants - grants >= 2  # OAuth tokens asked for again while the copy ran
    assert len(tokens.issued) - issued >= 2 and tokens.refused == 0  # no dead OAuth token ever reached GAR
    assert any(expiry < __import__("time").time() for expiry in google.tokens.values())


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "connection 'gcp_nope' does not exist: create it (type google_cloud_platform"),
    ("foreign key", "Google Cloud (connection 'gcp_bad'): Google refused the login (invalid_grant: Invalid JWT "
                    "Signature."),
    ("no location", "Google Cloud (connection 'gcp_test'), location moon-east9: cannot create or check repository "
                    "projects/dmi-test-project/locations/moon-east9/repositories/mirror: Invalid resource field value "
                    "in the request: location 'moon-east9' is not a valid location. (check gar-project and "
                    "gar-location)"),
    ("no project", "Google Cloud (connection 'gcp_test'), location europe-west3: cannot create or check repository "
                   "projects/someone-elses/locations/europe-west3/repositories/mirror: denied (Permission "
                   "'artifactregistry.repositories.get' denied on resource '//artifactregistry.googleapis.com/projects"
                   "/someone-elses' (or it may not exist).): the identity needs roles/artifactregistry.admin"),
])
def test_gar_bad_input_is_one_clear_final_line(google, open_registry, monkeypatch, case, expected):
    from cryptography.hazmat.primitives.asymmetric import rsa

    monkeypatch.setenv("AIRFLOW_CONN_GCP_TEST", gcp_connection(google))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monkeypatch.setenv("AIRFLOW_CONN_GCP_BAD", json.dumps({"conn_type": "google_cloud_platform", "extra": {
        "keyfile_dict": json.dumps(google.key_info(key=stranger))}}))
    conn = {"missing": "gcp_nope", "foreign key": "gcp_bad"}.get(case, "gcp_test")
    settings = {"no location": {"location": "moon-east9"}, "no project": {"project": "someone-elses"}}.get(case, {})
    job = gar_job(google, open_registry, "any/thing", conn_id=conn)
    job = dataclasses.replace(job, target=dataclasses.replace(job.target, gar=dataclasses.replace(job.target.gar,
                                                                                                 **settings)))
    with pytest.raises(DmiError) as exc:
        target = make_target(job)
        target.endpoint().login()  # the registry login: an OAuth token
        target.ensure_repository(job.target.repository)
    assert str(exc.value).startswith(expected), str(exc.value)
    assert not exc.value.retryable
    assert "PRIVATE KEY" not in str(exc.value) and "ya29." not in str(exc.value)


# -- Azure Container Registry ----------------------------------------------------------------------------
def test_acr_service_principal_chunks_big_blobs_and_renews_its_refresh_token(azure, open_registry, factory,
                                                                              repo_name, monkeypatch):
    principal = azure.entra.add_principal()
    monkeypatch.setenv("AIRFLOW_CONN_AZ_TEST", azure_connection(azure, principal))
    front, tokens = azure.front, azure.registry.token_server
    monkeypatch.setattr(front, "max_put", 512 * 1024)  # ACR refuses large single PUTs
    monkeypatch.setattr(front, "refresh_lifetime", 3)  # ACR refresh tokens die; DMI asks for new ones
    monkeypatch.setattr(front, "latency", 0.1)  # 32 chunks: the copy outlives its first refresh token
    monkeypatch.setattr(tokens, "expires_in", 2)
    artifact = factory.image(layers=[factory.layer(2 * 1024 * 1024), factory.layer()])
    repo = repo_name("acr")
    push(rig_client(open_registry), repo, "1.0", artifact)
    exchanges, refused = len(front.exchanges), front.refused_puts
    front.reset()

    results = mirror(acr_job(azure, open_registry, repo, chunk=64 * 1024))
    assert [r.status for r in results] == ["copied"]
    assert inspect_raw(f"{azure.host}/mirror/{repo}:1.0", azure.admin) == artifact.manifest
    assert front.refused_puts == refused  # the big layer went in chunks, never as one large PUT
    assert front.count("PATCH", "upload") >= 2 * 1024 * 1024 // (64 * 1024)
    assert len(front.exchanges) - exchanges >= 2 and front.oauth_refused == []  # renewed before it died
    exchange = front.exchanges[-1]
    assert set(exchange) == {"grant_type", "service", "access_token"} and exchange["service"] == azure.host
    grant = [g for g in front.token_grants if "grant_type" in g][-1]
    assert grant["grant_type"] == "refresh_token" and grant["scope"].startswith("repository:mirror/")


def test_acr_refuses_one_large_put_without_chunks(azure, open_registry, factory, repo_name, monkeypatch):
    principal = azure.entra.add_principal()
    monkeypatch.setenv("AIRFLOW_CONN_AZ_TEST", azure_connection(azure, principal))
    monkeypatch.setattr(azure.front, "max_put", 512 * 1024)
    repo = repo_name("acr")
    push(rig_client(open_registry), repo, "1.0", factory.image(layers=[factory.layer(1024 * 1024)]))
    with pytest.raises(RegistryError, match="HTTP 413"):
        mirror(acr_job(azure, open_registry, repo, chunk=0))


def test_acr_admin_user_logs_in_with_basic_credentials(azure, open_registry, factory, repo_name, monkeypatch):
    user, password = azure.admin
    monkeypatch.setenv("AIRFLOW_CONN_ACR_ADMIN", json.dumps({"conn_type": "azure_container_registry",
                                                             "host": azure.host, "login": user,
                                                             "password": password}))
    artifact = factory.image()
    repo = repo_name("acr")
    push(rig_client(open_registry), repo, "1.0", artifact)
    exchanges = len(azure.front.exchanges)
    job = acr_job(azure, open_registry, repo, conn_id="acr_admin")
    job = dataclasses.replace(job, target=dataclasses.replace(job.target, registry=None))  # the connection's host
    assert [r.status for r in mirror(job)] == ["copied"]
    assert inspect_raw(f"{azure.host}/mirror/{repo}:1.0", azure.admin) == artifact.manifest
    assert len(azure.front.exchanges) == exchanges  # no Entra ID involved


@pytest.mark.parametrize(("case", "expected", "retryable"), [
    ("missing", "connection 'az_nope' does not exist: create it (type azure with a service principal", False),
    ("wrong secret", "ACR {host} (connection 'az_test'): Entra ID refused the login (Authentication failed: "
                     "AADSTS7000215: Invalid client secret provided.): check the service principal's", False),
    ("no tenant", "connection 'az_test': a service principal needs the tenantId extra", False),
    ("unresolvable", "ACR nosuchacr.invalid (connection 'az_test'): cannot push to mirror/any/thing: "
                     "nosuchacr.invalid: cannot resolve nosuchacr.invalid (DNS", False),
])
def test_acr_bad_input_is_one_clear_line(azure, open_registry, monkeypatch, case, expected, retryable):
    client_id, secret = azure.entra.add_principal()
    extra = {"tenantId": None} if case == "no tenant" else {}
    given = (client_id, "not-the-secret-123") if case == "wrong secret" else (client_id, secret)
    monkeypatch.setenv("AIRFLOW_CONN_AZ_TEST", azure_connection(azure, given, **extra))
    job = acr_job(azure, open_registry, "any/thing", conn_id="az_nope" if case == "missing" else "az_test")
    if case == "unresolvable":
        job = dataclasses.replace(job, target=dataclasses.replace(job.target, registry="nosuchacr.invalid"))
    with pytest.raises(DmiError) as exc:
        make_target(job).ensure_repository(job.target.repository)
    assert str(exc.value).startswith(expected.format(host=azure.host)), str(exc.value)
    assert exc.value.retryable is retryable
    assert secret not in str(exc.value) and "not-the-secret-123" not in str(exc.value)


def test_a_gar_source_renews_its_token_during_the_copy(google, open_registry, factory, repo_name, monkeypatch,
                                                       proxy_factory):
    monkeypatch.setenv("AIRFLOW_CONN_GCP_SOURCE", gcp_connection(google))
    monkeypatch.setattr(google, "token_lifetime", 2)
    tokens = google.registry.token_server
    monkeypatch.setattr(tokens, "expires_in", 2)
    monkeypatch.setattr(tokens, "claimed_expires_in", 3600)
    slow = proxy_factory(google.registry)
    slow.latency = 0.25
    artifact = factory.image(layers=[factory.layer() for _ in range(8)])
    path = f"{google.add_repository('seeded')}/{repo_name('src')}"
    push(RigClient(f"http://{google.host}", google.mint()), path, "1.0", artifact)
    job = MirrorSpec(section="from-gar", source=SourceSpec(kind="gar", registry=slow.host, repository=path,
                                                          conn_id="gcp_source"),
                     target=TargetSpec(kind="registry", registry=open_registry.host, repository=repo_name("dst")),
                     selection=SelectionSpec(tags=("1.0",)),
                     transfer=TransferSpec(insecure_registries=(slow.host, open_registry.host)))
    grants = google.grants
    assert [r.status for r in mirror(job)] == ["copied"]
    assert inspect_raw(f"{open_registry.host}/{job.target.repository}:1.0") == artifact.manifest
    assert google.grants - grants >= 2 and tokens.refused == 0


def test_acr_locks_the_repository_after_a_push_and_lifts_the_write_lock_for_its_own(azure, open_registry, factory,
                                                                                  repo_name, monkeypatch):
    principal = azure.entra.add_principal()
    monkeypatch.setenv("AIRFLOW_CONN_AZ_TEST", azure_connection(azure, principal))
    repo = repo_name("acr")
    first, second = factory.image(), factory.image()
    push(rig_client(open_registry), repo, "1.0", first)
    job = acr_job(azure, open_registry, repo)
    job = dataclasses.replace(job, target=dataclasses.replace(
        job.target, acr=AcrSettings("az_test", write_enabled=False, delete_enabled=False)))
    assert [r.status for r in mirror(job)] == ["copied"]
    name = f"mirror/{repo}"
    assert azure.front.attributes[name] == {"deleteEnabled": False, "writeEnabled": False, "listEnabled": True,
                                                 "readEnabled": True}
    other = RigClient(f"http://{azure.host}", azure.admin)  # somebody else pushing into the mirror: refused
    with pytest.raises(Exception, match="403"):
        push(other, name, "sneaky", factory.image())
    deleted = other.request("DELETE", f"/v2/{name}/manifests/{first.digest}", other.scope(name, push=True))
    assert deleted.status_code == 403

    push(rig_client(open_registry), repo, "1.0", second)  # the source moves on: DMI may still write
    refused = azure.front.locked_writes
    assert [r.status for r in mirror(job)] == ["copied"]
    assert azure.front.locked_writes == refused  # DMI's own push was never refused
    assert inspect_raw(f"{azure.host}/{name}:1.0", azure.admin) == second.manifest
    assert azure.front.attributes[name]["writeEnabled"] is False  # locked again
