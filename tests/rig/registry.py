"""docker-registry (CNCF distribution 2.8) processes: open, htpasswd (basic auth) or token auth."""

from __future__ import annotations

import json
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.rig.process import Service, free_port
from tests.rig.token_server import ISSUER, TokenServer


@dataclass
class Registry:
    """A running registry. `host` is what goes in image references (127.0.0.1:PORT)."""

    name: str
    root: Path
    auth: str = "open"  # open | htpasswd | token
    users: dict[str, str] = field(default_factory=dict)
    token_expires_in: int = 300
    port: int = 0
    token_server: TokenServer | None = None
    service: Service | None = None
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS
    realm: str | None = None  # token auth: where clients are sent for tokens (a cloud's front), else the server's
    ca: Path | None = None  # what a client trusts to reach it over HTTPS (readiness check)
    access_log: bool = False  # every request a line in registry.log (combined format)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        return next(iter(self.users.items()), None)

    def _config(self) -> dict:
        config: dict = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": not self.access_log}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            # A fixed secret keeps upload state valid across restarts.
            "http": {"addr": self.host, "secret": f"dmi-test-{self.name}", "headers": {}},
        }
        if self.tls:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        if self.auth == "htpasswd":
            htpasswd = self.root / "htpasswd"
            lines = [
                subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True)
                .stdout.strip()
                for user, password in self.users.items()
            ]
            htpasswd.write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": f"dmi-{self.name}", "path": str(htpasswd)}}
        elif self.auth == "token":
            if self.token_server is None:  # a test may bring its own, with a cloud's rules
                self.token_server = TokenServer(service=f"registry.{self.name}.test", users=dict(self.users),
                                                expires_in=self.token_expires_in)
            realm = self.token_server.start()
            realm = self.realm or realm
            config["auth"] = {
                "token": {
                    "realm": realm, "service": self.token_server.service, "issuer": ISSUER,
                    "rootcertbundle": str(self.token_server.write_cert(self.root / "token-ca.pem")),
                }
            }
        elif self.auth != "open":
            raise ValueError(f"unknown auth {self.auth!r}")
        return config

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config_path = self.root / "config.yml"
        config_path.write_text(json.dumps(self._config(), indent=2))  # JSON is YAML
        self.service = Service(f"docker-registry {self.name}", ["docker-registry", "serve", str(config_path)],
                               self.root / "registry.log")
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        self.service.start(lambda: httpx.get(f"{self.url}/v2/", timeout=1, verify=verify).status_code in (200, 401))
        return self

    def requests(self) -> list[str]:
        """The access log's request lines (`GET /v2/… HTTP/1.1`), oldest first (with `access_log`)."""
        text = (self.root / "registry.log").read_text(errors="replace") if self.service else ""
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2 and '" ' in line
                and line.split('"')[1].split(" ")[0] in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE")]

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        if self.token_server:
            self.token_server.stop()
