"""The ECR target as the operators use it: its login renewed in the middle of a copy (moto's ECR API, the rig's
registry behind it)."""

from __future__ import annotations

from dmi_provider.spec import Environment, MirrorSpec, TargetSpec


def test_the_ecr_target_renews_its_login_in_the_middle_of_a_copy(ecr, monkeypatch, factory, repo_name):
    """The registry client asks the target for credentials at each request; the target logs in again
    once its token is near expiry (moto's tokens claim an expiry in the past: the 5-minute floor)."""
    import json

    from dmi_provider.registry.client import HostSettings, RegistryClient
    from dmi_provider.registry.network import Network
    from dmi_provider.targets import ecr as ecr_module
    from dmi_provider.targets import make_target
    from tests.rig.fixtures import rig_client
    from tests.rig.images import push
    from tests.rig.services import MOTO_REGION

    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": MOTO_REGION, "endpoint_url": ecr.moto.endpoint}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    repo = repo_name("renew")
    push(rig_client(ecr.registry, ecr.registry.credentials), repo, "1", factory.image())
    target = make_target(MirrorSpec(section="s", target=TargetSpec(kind="ecr", registry=ecr.registry.host,
                                                                   repository=repo),
                                    env=Environment(aws_account=ecr.account, aws_region=MOTO_REGION)))
    logins = []
    real = target.hook.get_temporary_credentials
    monkeypatch.setattr(target.hook, "get_temporary_credentials", lambda **kw: logins.append(kw) or real(**kw))
    now = [1000.0]
    monkeypatch.setattr(ecr_module.time, "monotonic", lambda: now[0])
    endpoint = target.endpoint()
    client = RegistryClient(endpoint.host, HostSettings(endpoint.credentials, Network(insecure=True)))
    assert client.head_manifest(repo, "1") is not None and len(logins) == 1
    assert client.blob_exists(repo, "sha256:" + "0" * 64) is False and len(logins) == 1  # still fresh
    now[0] += ecr_module.MIN_LIFETIME + 1
    assert client.head_manifest(repo, "1") is not None and len(logins) == 2  # renewed, mid-"copy"
    assert logins[0] == {"registry_ids": [ecr.account]}
    client.close()
