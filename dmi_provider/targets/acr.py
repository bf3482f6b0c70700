"""target = acr: Azure Container Registry, `NAME.azurecr.io`. Repositories are created on push, so
ensure_repository proves the registry answers and the identity may push there. ACR refuses large single-PUT
uploads: blobs above `upload-chunk-size` (8 MiB by default) go in chunks."""

from __future__ import annotations

import json
from functools import cached_property

from dmi_provider.config_keys import ACR_CHUNK, CLOUD_NAMES
from dmi_provider.errors import DmiError
from dmi_provider.registry.client import Call, HostSettings, RegistryClient, RetryPolicy, Uploads
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.network import Network
from dmi_provider.spec import MirrorSpec
from dmi_provider.targets.azure import AcrLogin, acr_login
from dmi_provider.targets.base import Endpoint, RepositoryOutcome


class AcrTarget:
    kind = "acr"
    cloud = CLOUD_NAMES["acr"]

    def __init__(self, spec: MirrorSpec, *, source: bool = False):
        self.spec, self.source, self.settings = spec, source, spec.target.acr
        self.conn_id = spec.source.conn_id if source else self.settings.conn_id
        self.host = spec.source.registry if source else (spec.target.registry or self.settings.host)
        chunk = spec.transfer.upload_chunk_size
        self.uploads = Uploads(chunk=ACR_CHUNK if chunk is None else chunk)

    def _network(self, host: str) -> Network:
        return self.spec.source_network if self.source else self.spec.target_network(host)

    @cached_property
    def login(self) -> AcrLogin:
        """The registry's login; its host from config.ini, else from the connection's Registry Server."""
        return acr_login(self.conn_id, self.host, self._network)

    def endpoint(self) -> Endpoint:
        login = self.login
        return Endpoint(login.host, login, login.network, self.uploads)

    def _client(self) -> RegistryClient:
        login = self.login
        return RegistryClient(login.host, HostSettings(login, login.network, RetryPolicy(attempts=2), timeout=30))

    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        """ACR creates repositories on push: prove the registry answers and the identity may push there. A
        repository DMI keeps write-locked (acr-write-enabled = false) is unlocked for the push (after_push locks
        it again)."""
        client, note = self._client(), "created on push by ACR; the login may push there"
        try:
            if self.settings.write_enabled is False and self._attributes(client, repository) is not None:
                self._attributes(client, repository, {"writeEnabled": True})
                note += "; write lock lifted for the push"
            client.check_push(repository)
        except RegistryError as exc:
            raise DmiError(f"{self.login.who}: cannot push to {repository}: {exc}", retryable=exc.retryable) from None
        finally:
            client.close()
        return RepositoryOutcome(repository, uri=f"{self.login.host}/{repository}", note=note)

    def after_push(self, repository: str) -> str | None:
        """The repository's locks (acr-write-enabled, acr-delete-enabled), now that it exists."""
        wanted = self.settings.attributes()
        if not wanted:
            return None
        client = self._client()
        try:
            self._attributes(client, repository, wanted)
        except RegistryError as exc:
            raise DmiError(f"{self.login.who}: cannot set {wanted} on {repository}: {exc}",
                           retryable=exc.retryable) from None
        finally:
            client.close()
        return f"{repository}: " + ", ".join(f"{k} = {str(v).lower()}" for k, v in wanted.items())

    @staticmethod
    def _attributes(client: RegistryClient, repository: str, change: dict[str, bool] | None = None) -> dict | None:
        """ACR's repository properties (`/acr/v1/<name>`): read them (None: no such repository), or change some."""
        scope = f"repository:{repository}:metadata_read,metadata_write"
        if change is None:
            r = client.send(Call("GET", f"/acr/v1/{repository}", scope, ok=(200, 404)))
        else:
            r = client.send(Call("PATCH", f"/acr/v1/{repository}", scope, content=json.dumps(change).encode(),
                                 headers={"Content-Type": "application/json"}))
        return r.json().get("changeableAttributes") if r.status_code == 200 else None

    def check_repository(self, repository: str) -> RepositoryOutcome:
        return self.ensure_repository(repository)
