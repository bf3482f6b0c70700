"""Registry credentials and tokens: WWW-Authenticate challenges, bearer tokens cached by scope,
basic auth, and credentials read from a docker config.json (auths and credential helpers)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dmi_provider.registry.reference import DOCKER_HUB

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')
# docker config keys that mean Docker Hub.
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io",
             "https://registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A login. With `refresh_token`, the password is an OAuth2 refresh token (docker's `identitytoken`, ACR's
    refresh token): it is exchanged at the token realm with `grant_type=refresh_token`, never sent as Basic."""

    username: str
    password: str = field(repr=False)
    refresh_token: bool = False
    # A cloud's login (ECR, GAR, ACR): those clouds hand out tokens at the registry's own host only, so a
    # challenge naming a token realm elsewhere is refused rather than given the cloud's credential.
    own_realm: bool = False

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """`USER:PASSWORD` as given on a command line."""
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise ValueError("credentials must be USER:PASSWORD")
        return cls(user, password)


# Where a client asks for its login each time it needs one (a cloud target renews expiring tokens).
CredentialSource = Callable[[], "Credentials | None"]


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    realm: str = ""
    service: str = ""


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params.get("realm", ""), params.get("service", ""))


class TokenCache:
    """Bearer tokens by (realm, service, scope), kept until shortly before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            item = self._tokens.get(key)
            if item and item[1] > time.monotonic():
                return item[0]
            self._tokens.pop(key, None)
            return None

    def put(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        # Renew at 90% of the lifetime so a token does not die in the middle of a request.
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(expires_in * 0.9, 1.0))

    def drop(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


def _docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _helper_credentials(helper: str, server: str) -> Credentials | None:
    try:
        done = subprocess.run([f"docker-credential-{helper}", "get"], input=server, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return None
    if data.get("Username") and data.get("Secret"):
        return Credentials(data["Username"], data["Secret"])
    return None


def docker_config_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """Credentials for `registry` (a host as in references, e.g. docker.io) from a docker config.json."""
    path = path or _docker_config_path()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = list(_HUB_KEYS) if registry == DOCKER_HUB else [registry, f"https://{registry}", f"http://{registry}"]
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            found = _helper_credentials(helpers[key], key)
            if found:
                return found
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key) or auths.get(key.rstrip("/"))
        if not entry:
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            if user:
                return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
    if config.get("credsStore"):
        return _helper_credentials(config["credsStore"], keys[0])
    return None
