"""tinyproxy (Debian's), a real HTTP forward proxy on loopback, optionally asking for Basic auth.
Its log says which hosts it was asked to CONNECT to: that is how tests count what went through it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.rig.process import Service, free_port, port_open


@dataclass
class ForwardProxy:
    root: Path
    user: tuple[str, str] | None = None
    port: int = 0
    service: Service | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user[0]}:{self.user[1]}@" if self.user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "tinyproxy.log"

    def start(self) -> ForwardProxy:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60", "MaxClients 50", "Allow 127.0.0.1",
                 f"LogFile \"{self.log}\"", "LogLevel Connect", f"PidFile \"{self.root / 'tinyproxy.pid'}\"",
                 "DisableViaHeader Yes"]
        if self.user:
            lines.append(f"BasicAuth {self.user[0]} {self.user[1]}")
        config = self.root / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        self.service = Service("tinyproxy", ["tinyproxy", "-d", "-c", str(config)], self.root / "stdout.log")
        self.service.start(lambda: port_open(self.port))
        return self

    def connects(self, host: str | None = None) -> int:
        """CONNECT requests (https through the proxy) seen so far, to `host` (HOST:PORT) or to any."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        targets = re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP", text)
        return len(targets) if host is None else targets.count(host)

    def stop(self) -> None:
        if self.service:
            self.service.stop()
