"""Builds test images without network: real gzipped tar layers of random (incompressible) bytes,
Docker or OCI media types, single-platform images and multi-arch indexes, shared base layers.

Layers are valid for dockerd too: each is a tar with one file, and its diff_id is recorded in the
image config.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field

from tests.rig.client import RigClient

MEDIA = {
    "docker": {
        "manifest": "application/vnd.docker.distribution.manifest.v2+json",
        "index": "application/vnd.docker.distribution.manifest.list.v2+json",
        "config": "application/vnd.docker.container.image.v1+json",
        "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    },
    "oci": {
        "manifest": "application/vnd.oci.image.manifest.v1+json",
        "index": "application/vnd.oci.image.index.v1+json",
        "config": "application/vnd.oci.image.config.v1+json",
        "layer": "application/vnd.oci.image.layer.v1.tar+gzip",
    },
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    data: bytes
    diff_id: str = ""

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Image:
    manifest: bytes
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]
    platform: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class Index:
    manifest: bytes
    media_type: str
    children: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        seen: dict[str, Blob] = {}
        for child in self.children:
            for blob in child.blobs:
                seen.setdefault(blob.digest, blob)
        return tuple(seen.values())


@dataclass
class ImageFactory:
    seed: int = 1
    _rng: random.Random = field(init=False)
    _n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def layer(self, size: int = 64 * 1024) -> Blob:
        """A gzipped tar holding one file of `size` random bytes."""
        self._n += 1
        payload = self.random_bytes(size)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"dmi-layer-{self.seed}-{self._n}.bin")
            info.size, info.mtime, info.mode = size, 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
        tar_bytes = raw.getvalue()
        return Blob(gzip.compress(tar_bytes, compresslevel=1, mtime=0), diff_id=sha256(tar_bytes))

    def random_bytes(self, size: int) -> bytes:
        step = 16 << 20  # randbytes() refuses very large sizes at once
        return b"".join(self._rng.randbytes(min(step, size - i)) for i in range(0, size, step))

    def raw_blob(self, size: int) -> Blob:
        """Random bytes that are no tar: fine for registry-to-registry copies, not for dockerd."""
        return Blob(self.random_bytes(size))

    def image(self, layers: list[Blob] | None = None, platform: str = "linux/amd64", media: str = "docker",
              label: str | None = None) -> Image:
        layers = list(layers) if layers is not None else [self.layer()]
        self._n += 1
        os_, arch, *variant = platform.split("/")
        config: dict = {
            "architecture": arch, "os": os_,
            "config": {"Cmd": ["/dmi-test"], "Labels": {"dmi.test": label or f"{self.seed}-{self._n}"}},
            "created": "2026-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "dmi image factory"} for _ in layers],
        }
        if variant:
            config["variant"] = variant[0]
        config_blob = Blob(json.dumps(config, sort_keys=True).encode())
        types = MEDIA[media]
        manifest = {
            "schemaVersion": 2,
            "mediaType": types["manifest"],
            "config": {"mediaType": types["config"], "size": config_blob.size, "digest": config_blob.digest},
            "layers": [{"mediaType": types["layer"], "size": b.size, "digest": b.digest} for b in layers],
        }
        return Image(json.dumps(manifest, indent=3).encode(), types["manifest"], config_blob, tuple(layers),
                     platform)

    def index(self, children: list[Image], media: str = "docker") -> Index:
        types = MEDIA[media]
        entries = []
        for child in children:
            os_, arch, *variant = child.platform.split("/")
            platform = {"architecture": arch, "os": os_} | ({"variant": variant[0]} if variant else {})
            entries.append({"mediaType": child.media_type, "size": len(child.manifest), "digest": child.digest,
                            "platform": platform})
        body = {"schemaVersion": 2, "mediaType": types["index"], "manifests": entries}
        return Index(json.dumps(body, indent=3).encode(), types["index"], tuple(children))

    def multiarch(self, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"), media: str = "docker",
                  base: Blob | None = None, size: int = 64 * 1024) -> Index:
        children = []
        for platform in platforms:
            layers = ([base] if base else []) + [self.layer(size)]
            children.append(self.image(layers, platform=platform, media=media))
        return self.index(children, media=media)


def push(client: RigClient, repo: str, tag: str, artifact: Image | Index) -> str:
    """Push blobs, then child manifests by digest, then the top manifest by tag."""
    for blob in artifact.blobs:
        client.put_blob(repo, blob.data)
    if isinstance(artifact, Index):
        for child in artifact.children:
            client.put_manifest(repo, child.digest, child.manifest, child.media_type)
    client.put_manifest(repo, tag, artifact.manifest, artifact.media_type)
    return artifact.digest
