"""target = gar: Google Artifact Registry. Images go to `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/<path>`;
the Artifact Registry repository (format DOCKER) must exist before a push, so ensure_repository creates it
through the Artifact Registry API with the section's settings. GAR takes each blob as one PUT and never
fulfils cross-repository mounts (so none are asked for)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import artifactregistry_v1 as ar

from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.errors import DmiError
from dmi_provider.registry.client import Uploads
from dmi_provider.spec import GarSettings, MirrorSpec
from dmi_provider.targets.base import Endpoint, RepositoryOutcome
from dmi_provider.targets.google import GoogleLogin, google_login

UPLOADS = Uploads(chunk=0, mounts=False)
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")
OPERATION_TIMEOUT = 120.0
# AR repositories this process made sure of: (connection, project, location, repository). Sections share one.
_ENSURED: dict[tuple[str, str, str, str], RepositoryOutcome] = {}
_ENSURED_LOCK = threading.Lock()


class GarTarget:
    kind = "gar"
    cloud = CLOUD_NAMES["gar"]

    def __init__(self, spec: MirrorSpec, *, source: bool = False):
        self.spec = spec
        self.settings: GarSettings = spec.target.gar
        self.conn_id = (spec.source.conn_id if source else self.settings.conn_id) or "google_cloud_default"
        self.host = spec.source.registry if source else (spec.target.registry or self.settings.host)
        self.network = spec.source_network if source else spec.target_network(self.host)

    @cached_property
    def login(self) -> GoogleLogin:
        return google_login(self.conn_id, self.network)

    @property
    def project(self) -> str:
        project = self.settings.project or self.login.project
        if not project:
            raise DmiError(f"{self.login.who}: no project: set gar-project, or the connection's project extra")
        return project

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.settings.location}"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.login.registry_login, self.network, UPLOADS,
                        f"{self.project}/{self.settings.repository}")

    # -- the Artifact Registry repository -----------------------------------------------------------
    @cached_property
    def api(self) -> ar.ArtifactRegistryClient:
        endpoint = self.settings.api_endpoint.rstrip("/")
        return ar.ArtifactRegistryClient(credentials=self.login.credentials, transport="rest",
                                         client_options=ClientOptions(api_endpoint=endpoint))

    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        """The AR repository (not the image: images are created on push) exists with the section's settings;
        an existing one is fine, settings that differ are reported."""
        key = (self.conn_id, self.project, self.settings.location, self.settings.repository)
        with _ENSURED_LOCK:
            if key in _ENSURED:  # made sure of by an earlier section of this process
                return dataclasses.replace(_ENSURED[key], created=False)
        with self.errors(f"create or check repository {self.name}"):
            created = False
            try:
                found = self.api.get_repository(name=self.name)
            except gexc.NotFound:
                try:
                    operation = self.api.create_repository(parent=self.parent, repository_id=self.settings.repository,
                                                           repository=self.wanted())
                    found = operation.result(timeout=OPERATION_TIMEOUT)
                    created = True
                except gexc.AlreadyExists:  # created by a parallel task
                    found = self.api.get_repository(name=self.name)
        outcome = self._outcome(found, created)
        with _ENSURED_LOCK:
            _ENSURED[key] = outcome
        return outcome

    def after_push(self, repository: str) -> None:
        return None  # every setting was applied by ensure_repository

    def check_repository(self, repository: str) -> RepositoryOutcome:
        with self.errors(f"look up repository {self.name}"):
            try:
                found = self.api.get_repository(name=self.name)
            except gexc.NotFound:
                return RepositoryOutcome(self.name, exists=False, note=f"GAR repository {self.name} would be created")
        return self._outcome(found, False)

    @property
    def name(self) -> str:
        return f"{self.parent}/repositories/{self.settings.repository}"

    def wanted(self) -> ar.Repository:
        """The repository DMI creates, from the API's own JSON names."""
        body: dict[str, Any] = {"format": "DOCKER", "mode": "STANDARD_REPOSITORY",
                                "dockerConfig": {"immutableTags": self.settings.immutable_tags}}
        if self.settings.description:
            body["description"] = self.settings.description
        if self.settings.labels:
            body["labels"] = dict(self.settings.labels)
        if self.settings.kms_key_name:
            body["kmsKeyName"] = self.settings.kms_key_name
        policies = self.settings.cleanup_policies
        if policies:
            body["cleanupPolicies"] = json.loads(policies.text)
            body["cleanupPolicyDryRun"] = self.settings.cleanup_policy_dry_run
        try:
            return ar.Repository.from_json(json.dumps(body))
        except Exception as exc:  # a cleanup policy the API would refuse too
            raise DmiError(f"gar-cleanup-policies {policies.path if policies else ''}: not the API's "
                           f"cleanupPolicies ({exc})") from None

    def _outcome(self, found: ar.Repository, created: bool) -> RepositoryOutcome:
        if found.format_ != ar.Repository.Format.DOCKER:
            raise DmiError(f"{self.login.who}: repository {self.name} holds format {found.format_.name}, not DOCKER: "
                           "choose another gar-repository")
        want = self.wanted()
        differences = []
        for label, have, wanted in (
                ("dockerConfig.immutableTags", found.docker_config.immutable_tags, want.docker_config.immutable_tags),
                ("kmsKeyName", found.kms_key_name, want.kms_key_name),
                ("description", found.description, want.description),
                ("labels", dict(found.labels), dict(want.labels)),
                ("cleanupPolicies", sorted(found.cleanup_policies), sorted(want.cleanup_policies))):
            if have != wanted and (wanted or label == "dockerConfig.immutableTags"):
                differences.append(f"{label}: repository has {json.dumps(have)}, config wants {json.dumps(wanted)}")
        uri = found.registry_uri or f"{self.host}/{self.project}/{self.settings.repository}"
        return RepositoryOutcome(self.name, created=created, uri=uri, differences=tuple(differences))

    def errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return api_errors(f"{self.login.who}, location {self.settings.location}", doing)


@contextlib.contextmanager
def api_errors(who: str, doing: str) -> Iterator[None]:
    """The Artifact Registry API's failures as one line: who, what was being done, what to do."""
    try:
        yield
    except DmiError:
        raise
    except Exception as exc:
        text = f"{who}: cannot {doing}"
        said = _REQUEST_PREFIX.sub("", str(getattr(exc, "message", "") or exc))  # the REST client's "GET url: "
        if isinstance(exc, gexc.Unauthorized):
            raise DmiError(f"{text}: Google does not accept the credentials ({said}): check the service account "
                           "key (revoked or deleted?)") from None
        if isinstance(exc, gexc.Forbidden):
            raise DmiError(f"{text}: denied ({said}): the identity needs roles/artifactregistry.admin (or "
                           "repositories.create and roles/artifactregistry.writer)") from None
        if isinstance(exc, gexc.BadRequest | gexc.NotFound):
            raise DmiError(f"{text}: {said} (check gar-project and gar-location)") from None
        if isinstance(exc, gexc.GoogleAPICallError):
            retry = isinstance(exc, gexc.ServerError | gexc.TooManyRequests)
            raise DmiError(f"{text}: HTTP {exc.code} {said}", retryable=retry) from None
        if isinstance(exc, gexc.RetryError | TimeoutError | ConnectionError | OSError):
            raise DmiError(f"{text}: the Artifact Registry API is unreachable ({type(exc).__name__}: {exc}); "
                           "check gar-api-endpoint and the network route", retryable=True) from None
        raise
