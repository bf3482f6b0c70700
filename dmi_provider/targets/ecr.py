"""target = ecr: AWS ECR through the amazon provider's EcrHook (registry login, repositories with their
settings). Account and region come from the parsed environment (AWS_ACCOUNT, AWS_DEFAULT_REGION) or the
AWS connection."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from urllib.parse import urlsplit

from airflow.providers.amazon.aws.hooks.ecr import EcrHook
from airflow.sdk.log import mask_secret

from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.errors import DmiError
from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.client import Uploads
from dmi_provider.registry.network import Network
from dmi_provider.spec import EcrSettings, MirrorSpec
from dmi_provider.targets.aws import aws_errors
from dmi_provider.targets.base import Endpoint, RepositoryOutcome

RENEW_BEFORE = 300.0  # seconds before a token's expiry at which a new one is asked for
MIN_LIFETIME = 300.0  # a token whose expiresAt is already past (clock skew) is used this long
ECR_HOST = re.compile(r"^([0-9]{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$", re.ASCII)


class EcrTarget:
    kind = "ecr"
    cloud = CLOUD_NAMES["ecr"]

    def __init__(self, spec: MirrorSpec, *, source: bool = False):
        self.spec = spec
        self.settings = spec.target.ecr
        self.uploads = Uploads(chunk=spec.transfer.upload_chunk_size or 0)
        self.account: str | None
        self.region: str | None
        self.network: Network | None
        if source:  # another account or region: both read from the source's host when it is ECR's own
            found = ECR_HOST.match(spec.source.registry)
            self.aws_conn_id = spec.source.conn_id or "aws_default"
            self.account, self.region = (found.group(1), found.group(2)) if found else (None, None)
            self.registry: str | None = spec.source.registry
            self.network = spec.source_network
        else:
            self.aws_conn_id = self.settings.conn_id
            self.region = spec.env.aws_region
            self.account = spec.env.aws_account
            self.registry = spec.target.registry  # replaces the token's host (PrivateLink, tests)
            self.network = None
        self._login: tuple[str, Credentials, float] | None = None  # host, credentials, renew at (monotonic)
        self._lock = threading.Lock()

    @cached_property
    def hook(self) -> EcrHook:
        return EcrHook(aws_conn_id=self.aws_conn_id, region_name=self.region)

    # -- login ------------------------------------------------------------------------------------
    def endpoint(self) -> Endpoint:
        host, _, _ = self._fresh()
        return Endpoint(host, self.credentials, self.network or self.spec.target_network(host), self.uploads)

    def credentials(self) -> Credentials:
        """The current token, renewed shortly before it expires (tokens last 12 hours)."""
        return self._fresh()[1]

    def _fresh(self) -> tuple[str, Credentials, float]:
        with self._lock:
            if self._login is None or time.monotonic() >= self._login[2]:
                self._login = self._log_in()
            return self._login

    def _log_in(self) -> tuple[str, Credentials, float]:
        with self.aws("log in to ECR (ecr:GetAuthorizationToken)"):
            found = self.hook.get_temporary_credentials(registry_ids=[self.account] if self.account else None)
        if not found:
            raise DmiError("ECR returned no authorization data", retryable=True)
        first = found[0]
        mask_secret(first.password)
        host = self.registry or urlsplit(first.proxy_endpoint).netloc or first.proxy_endpoint
        lifetime = (first.expires_at.astimezone(UTC) - datetime.now(UTC)).total_seconds() - RENEW_BEFORE
        login = Credentials(first.username, first.password, own_realm=True)
        return host, login, time.monotonic() + max(lifetime, MIN_LIFETIME)

    def aws(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """Turns boto's failures into one line naming the connection, the region and what to do."""
        return aws_errors(f"ECR (connection {self.aws_conn_id!r}, region {self.region or 'from the connection'})",
                          doing)

    # -- repositories -----------------------------------------------------------------------------
    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        """Create the repository with the configured settings; an existing one is fine, and settings that
        differ from the config are reported (not changed: encryption cannot change after creation)."""
        with self.aws(f"create or check repository {repository}"):
            return self._ensure(repository)

    def _ensure(self, repository: str) -> RepositoryOutcome:
        client = self.hook.conn
        wanted = _wanted(self.settings)
        created = False
        try:
            found = client.describe_repositories(repositoryNames=[repository])["repositories"][0]
        except client.exceptions.RepositoryNotFoundException:
            kwargs = dict(wanted)
            if self.settings.repository_tags:
                kwargs["tags"] = [{"Key": k, "Value": v} for k, v in self.settings.repository_tags]
            try:
                found = client.create_repository(repositoryName=repository, **kwargs)["repository"]
                created = True
            except client.exceptions.RepositoryAlreadyExistsException:  # created by a parallel task
                found = client.describe_repositories(repositoryNames=[repository])["repositories"][0]
        policy = self.settings.lifecycle_policy
        if policy:
            client.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=policy.text)
        return RepositoryOutcome(repository, created=created, uri=found.get("repositoryUri"),
                                 differences=_differences(wanted, found))

    def check_repository(self, repository: str) -> RepositoryOutcome:
        with self.aws(f"look up repository {repository} (ecr:DescribeRepositories)"):
            client = self.hook.conn
            try:
                found = client.describe_repositories(repositoryNames=[repository])["repositories"][0]
            except client.exceptions.RepositoryNotFoundException:
                found = None
        if found is None:
            return RepositoryOutcome(repository, exists=False, note=f"repository {repository} would be created")
        return RepositoryOutcome(repository, uri=found.get("repositoryUri"),
                                 differences=_differences(_wanted(self.settings), found))

    def after_push(self, repository: str) -> None:
        return None  # every setting was applied by ensure_repository


def _wanted(settings: EcrSettings) -> dict:
    encryption = {"encryptionType": settings.encryption}
    if settings.encryption == "KMS" and settings.kms_key:
        encryption["kmsKey"] = settings.kms_key
    return {"imageTagMutability": settings.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push},
            "encryptionConfiguration": encryption}


def _differences(wanted: dict, found: dict) -> tuple[str, ...]:
    out = []
    for key, value in wanted.items():
        have = found.get(key)
        if key == "encryptionConfiguration" and isinstance(have, dict):
            have = {k: v for k, v in have.items() if k in value}
        if have is not None and have != value:
            out.append(f"{key}: repository has {json.dumps(have)}, config wants {json.dumps(value)}")
    return tuple(out)
