"""Image references: the distribution grammar, and docker's normalisation rules.

`alpine` means `docker.io/library/alpine:latest`; `localhost:5000/x` keeps its registry.
Everything is validated here, before any URL is built from a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# Docker Hub's API host differs from its name in references.
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

# From distribution/reference/regexp.go.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$", re.ASCII)
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
HOST_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?$",
                     re.ASCII)
MAX_NAME = 255


class InvalidReference(ValueError):
    """An image reference, repository, tag or host that the distribution grammar refuses."""


def looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def check_host(host: str) -> str:
    """Validate `host[:port]` and return it with Docker Hub aliases folded to `docker.io`."""
    if not HOST_RE.fullmatch(host):
        raise InvalidReference(f"{host!r} is not a registry host (expected host or host:port)")
    if ":" in host and not host.endswith("]"):
        port = int(host.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise InvalidReference(f"{host!r} has a port out of range 1-65535")
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host


def check_path(path: str) -> str:
    """Validate a repository path (without registry), e.g. `istio/proxyv2`."""
    if not PATH_RE.fullmatch(path):
        raise InvalidReference(
            f"{path!r} is not a repository path: lowercase letters, digits and separators "
            "(. _ __ -) in components joined by /"
        )
    return path


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"{tag!r} is not a tag: up to 128 characters of letters, digits, _ . -, not starting with . or -"
        )
    return tag


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReference(f"{digest!r} is not a digest (expected algorithm:hex, e.g. sha256:...)")
    return digest


def normalize_repository(registry: str, path: str) -> str:
    """Docker Hub's one-component names live under `library/`."""
    if registry == DOCKER_HUB and "/" not in path:
        return f"library/{path}"
    return path


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def ref(self) -> str:
        """The tag or digest to ask the registry for (digest wins)."""
        return self.digest or self.tag or "latest"


    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse `[host[:port]/]path[:tag][@digest]` the way docker does."""
    if not text or text != text.strip():
        raise InvalidReference(f"{text!r} is not an image reference")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], check_tag(rest[colon + 1 :])
    first, _, remainder = rest.partition("/")
    if remainder and looks_like_host(first):
        registry, path = check_host(first), remainder
    else:
        registry, path = DOCKER_HUB, rest
    check_path(path)
    path = normalize_repository(registry, path)
    if len(f"{registry}/{path}") > MAX_NAME:
        raise InvalidReference(f"{text!r} is longer than {MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag, digest)
