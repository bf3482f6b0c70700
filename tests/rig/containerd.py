"""Debian's containerd, started with its own root, state and socket (the native snapshotter, no CRI plugin:
nothing of the host's is touched), and its `ctr` to pull through a hosts directory."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.rig.process import Service

CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  address = "{root}/debug.sock"
"""


@dataclass
class Pull:
    returncode: int
    output: str  # ctr --debug: every request's URL, the resolve lines, the error

    def urls(self) -> list[str]:
        """The URL of every request ctr made (its `do request` debug lines)."""
        return [part.split("=", 1)[1].strip('"') for line in self.output.splitlines() if 'msg="do request"' in line
                for part in line.split(" ") if part.startswith("url=")]


@dataclass
class Containerd:
    root: Path
    service: Service | None = None

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @classmethod
    def start(cls) -> Containerd:
        # Unix socket paths are limited to 108 bytes: keep the root short.
        self = cls(Path(tempfile.mkdtemp(prefix="dmi-ctd-", dir="/tmp")))
        config = self.root / "config.toml"
        config.write_text(CONFIG.format(root=self.root))
        self.service = Service("containerd", ["containerd", "--config", str(config)], self.root / "containerd.log")
        self.service.start(lambda: self.ctr("version").returncode == 0, timeout=60)
        return self

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "dmi-test", *args],
                              capture_output=True, text=True, timeout=120)

    def pull(self, reference: str, hosts_dir: Path) -> Pull:
        """`ctr images pull --hosts-dir DIR REFERENCE`, unpacked with the native snapshotter."""
        done = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "dmi-test", "--debug", "images",
                               "pull", "--snapshotter", "native", "--hosts-dir", str(hosts_dir), reference],
                              capture_output=True, text=True, timeout=180)
        return Pull(done.returncode, done.stdout + done.stderr)

    def digest(self, reference: str) -> str | None:
        """The digest containerd holds for REFERENCE (`ctr images ls`), or None."""
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == reference:
                return next((c for c in cols if c.startswith("sha256:")), None)
        return None

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        shutil.rmtree(self.root, ignore_errors=True)
