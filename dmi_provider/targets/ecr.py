"""ECR through the amazon provider's EcrHook: registry login, and repositories with their settings."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from airflow.providers.amazon.aws.hooks.ecr import EcrHook
from airflow.sdk.log import mask_secret

from dmi_provider.config import EcrSettings
from dmi_provider.registry.auth import Credentials
from dmi_provider.targets.endpoint import Endpoint

log = logging.getLogger(__name__)


def ecr_hook(aws_conn_id: str | None, region: str | None) -> EcrHook:
    return EcrHook(aws_conn_id=aws_conn_id, region_name=region)


def ecr_login(hook: EcrHook, account: str | None, target_registry: str | None) -> Endpoint:
    """A 12-hour token for the account's registry; `target-registry` replaces the token's host."""
    creds = hook.get_temporary_credentials(registry_ids=[account] if account else None)
    if not creds:
        raise RuntimeError("ECR returned no authorization data")
    first = creds[0]
    mask_secret(first.password)
    host = target_registry or urlsplit(first.proxy_endpoint).netloc or first.proxy_endpoint
    return Endpoint(host, Credentials(first.username, first.password))


def _wanted(settings: EcrSettings) -> dict:
    encryption = {"encryptionType": settings.encryption}
    if settings.encryption == "KMS" and settings.kms_key:
        encryption["kmsKey"] = settings.kms_key
    return {"imageTagMutability": settings.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push},
            "encryptionConfiguration": encryption}


def ensure_repository(hook: EcrHook, repository: str, settings: EcrSettings) -> dict:
    """Create the repository with the configured settings; an existing one is fine, and settings that
    differ from the config are reported (not changed: encryption cannot change after creation)."""
    client = hook.conn
    wanted = _wanted(settings)
    try:
        found = client.describe_repositories(repositoryNames=[repository])["repositories"][0]
        created = False
    except client.exceptions.RepositoryNotFoundException:
        kwargs = dict(wanted)
        if settings.repository_tags:
            kwargs["tags"] = [{"Key": k, "Value": v} for k, v in settings.repository_tags]
        try:
            found = client.create_repository(repositoryName=repository, **kwargs)["repository"]
            created = True
        except client.exceptions.RepositoryAlreadyExistsException:  # created by a parallel task
            found = client.describe_repositories(repositoryNames=[repository])["repositories"][0]
            created = False
    differences = []
    for key, value in wanted.items():
        have = found.get(key)
        if key == "encryptionConfiguration" and isinstance(have, dict):
            have = {k: v for k, v in have.items() if k in value}
        if have is not None and have != value:
            differences.append(f"{key}: repository has {json.dumps(have)}, config wants {json.dumps(value)}")
    if settings.lifecycle_policy:
        client.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=settings.lifecycle_policy)
    return {"repository": repository, "uri": found.get("repositoryUri"), "created": created,
            "differences": differences}
