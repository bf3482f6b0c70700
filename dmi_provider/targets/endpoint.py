"""Resolve where a section's images go and build a Copier with its credentials (Airflow connections)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmi_provider.hooks.connections import registry_credentials
from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.copy import ClientPool, Copier
from dmi_provider.registry.locations import BlobLocations, default_cache_path
from dmi_provider.registry.reference import check_host


@dataclass(frozen=True)
class Endpoint:
    host: str
    credentials: Credentials | None


def target_endpoint(target: str, target_registry: str | None, target_conn_id: str | None,
                    aws_conn_id: str | None) -> Endpoint:
    """ECR: a fresh login through EcrHook (account and region from the connection or the legacy variables);
    any other registry: its host and the target connection's login."""
    if target == "ecr":
        from dmi_provider.targets.ecr import ecr_hook, ecr_login  # the amazon provider: only when needed

        hook = ecr_hook(aws_conn_id, os.environ.get("AWS_DEFAULT_REGION") or None)
        return ecr_login(hook, os.environ.get("AWS_ACCOUNT") or None, target_registry)
    if not target_registry:
        raise ValueError("target = registry needs target_registry")
    return Endpoint(check_host(target_registry), registry_credentials(target_conn_id))


def make_copier(source_registry: str, source_conn_id: str | None, endpoint: Endpoint, insecure: Sequence[str],
                progress: Callable[[str], None] | None = None) -> Copier:
    creds = {}
    src_creds = registry_credentials(source_conn_id)
    if src_creds:
        creds[source_registry] = src_creds
    if endpoint.credentials:
        creds[endpoint.host] = endpoint.credentials
    # Credentials come from Airflow connections only, not from a worker's docker config. Blob locations
    # persist per worker, so sections sharing base layers mount them instead of reading them again.
    return Copier(ClientPool(creds, insecure, use_docker_config=False), progress=progress,
                  locations=BlobLocations(default_cache_path()))
