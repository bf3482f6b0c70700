"""target = registry: any OCI / Docker v2 registry. Repositories are created on push."""

from __future__ import annotations

from functools import cached_property

from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.errors import DmiError
from dmi_provider.hooks.connections import registry_login
from dmi_provider.registry.client import Uploads
from dmi_provider.registry.reference import check_host
from dmi_provider.spec import MirrorSpec
from dmi_provider.targets.base import Endpoint, FixedTarget


class RegistryTarget(FixedTarget):
    """A FixedTarget whose login comes from the section's target-conn-id, read when first needed."""

    kind = "registry"
    cloud = CLOUD_NAMES["registry"]

    def __init__(self, spec: MirrorSpec):  # no super().__init__(): the endpoint is made when first asked for
        if not spec.target.registry:
            raise DmiError(f"section {spec.section!r}: target = registry needs target-registry (host[:port])")
        self.host = check_host(spec.target.registry)
        self.conn_id = spec.target.conn_id
        self.network = spec.target_network(self.host)
        self.uploads = Uploads(chunk=spec.transfer.upload_chunk_size or 0)

    @cached_property
    def _logged_in(self) -> Endpoint:
        login = registry_login(self.conn_id)
        return Endpoint(self.host, login.credentials, self.network.merge(login.network), self.uploads)

    def endpoint(self) -> Endpoint:
        return self._logged_in


