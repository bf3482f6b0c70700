"""target = acr: Azure Container Registry, `NAME.azurecr.io`. Repositories are created on push, so
ensure_repository proves the registry answers and the identity may push there. ACR refuses large single-PUT
uploads: blobs above `upload-chunk-size` (8 MiB by default) go in chunks."""

from __future__ import annotations

from functools import cached_property

from dmi_provider.config_keys import ACR_CHUNK, CLOUD_NAMES
from dmi_provider.errors import DmiError
from dmi_provider.job import Job
from dmi_provider.registry.client import RegistryClient, RetryPolicy, Uploads
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.network import Network
from dmi_provider.targets.azure import AcrLogin, acr_login
from dmi_provider.targets.base import Endpoint, RepositoryOutcome


class AcrTarget:
    kind = "acr"
    cloud = CLOUD_NAMES["acr"]

    def __init__(self, job: Job, *, source: bool = False):
        self.job, self.source = job, source
        self.conn_id = job.source_conn_id if source else job.acr.conn_id
        self.host = job.source_registry if source else (job.target_registry or job.acr.host)
        chunk = job.upload_chunk_size
        self.uploads = Uploads(chunk=ACR_CHUNK if chunk is None else chunk)

    def _network(self, host: str) -> Network:
        return self.job.source_network if self.source else self.job.target_network(host)

    @cached_property
    def login(self) -> AcrLogin:
        """The registry's login; its host from config.ini, else from the connection's Registry Server."""
        return acr_login(self.conn_id, self.host, self._network)

    def endpoint(self) -> Endpoint:
        login = self.login
        return Endpoint(login.host, login, login.network, self.uploads)

    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        """ACR creates repositories on push: prove the registry answers and the identity may push there."""
        login = self.login
        client = RegistryClient(login.host, credentials=login, network=login.network,
                                retry=RetryPolicy(attempts=2), timeout=30)
        try:
            client.check_push(repository)
        except RegistryError as exc:
            raise DmiError(f"{login.who}: cannot push to {repository}: {exc}", retryable=exc.retryable) from None
        finally:
            client.close()
        return RepositoryOutcome(repository, uri=f"{login.host}/{repository}",
                                 note="created on push by ACR; the login may push there")

    def check_repository(self, repository: str) -> RepositoryOutcome:
        return self.ensure_repository(repository)
