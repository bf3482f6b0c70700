"""The Target protocol: where images go. Every target module implements it; nothing here knows a cloud."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from dmi_provider.registry.auth import Credentials, CredentialSource
from dmi_provider.registry.client import Uploads
from dmi_provider.registry.network import Network


@dataclass(frozen=True)
class Endpoint:
    """A registry host, its login (fixed credentials, or a source asked each time: renews tokens), how to
    reach it, how it takes uploads, and the path its repositories live under (GAR: `PROJECT/REPOSITORY`)."""

    host: str
    credentials: Credentials | CredentialSource | None = None
    network: Network = field(default_factory=Network)  # its proxy, CA, plain HTTP
    uploads: Uploads = field(default_factory=Uploads)
    namespace: str = ""

    def login(self) -> Credentials | None:
        """The credentials as of now (a source is asked)."""
        return self.credentials() if callable(self.credentials) else self.credentials

    def repository(self, name: str) -> str:
        """Where a target repository sits on this host."""
        return f"{self.namespace}/{name}" if self.namespace else name


@dataclass(frozen=True)
class RepositoryOutcome:
    """What ensure_repository did: created it, found it (with settings that differ), or nothing to do."""

    repository: str
    created: bool = False
    exists: bool = True
    uri: str | None = None
    differences: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Target(Protocol):
    """Where a section's images go. `endpoint()` may log in (once, then renewed when it expires);
    `ensure_repository` makes the repository ready for a push with the section's settings;
    `check_repository` only looks (for `dmi plan`)."""

    kind: str
    cloud: str  # what `dmi plan` and the UI call it: "AWS ECR", "Google Artifact Registry" …

    def endpoint(self) -> Endpoint: ...

    def ensure_repository(self, repository: str) -> RepositoryOutcome: ...

    def check_repository(self, repository: str) -> RepositoryOutcome: ...

    def after_push(self, repository: str) -> str | None:
        """Settings a registry applies only to a repository that exists (ACR's locks); a note, or None."""


class FixedTarget:
    """A registry whose endpoint the caller already has (`dmi copy`'s DST with --dst-creds): nothing to log in
    to, repositories created on push."""

    kind = "registry"
    cloud = "registry"

    def __init__(self, endpoint: Endpoint):
        self._fixed = endpoint

    def endpoint(self) -> Endpoint:
        return self._fixed

    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        return RepositoryOutcome(repository, note="created on push by the registry")

    def check_repository(self, repository: str) -> RepositoryOutcome:
        return self.ensure_repository(repository)

    def after_push(self, repository: str) -> str | None:
        return None
