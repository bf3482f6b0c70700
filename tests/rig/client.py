"""A small registry client for the rig: seeds images and reads them back.

Deliberately separate from dmi_provider.registry, so that the code under test never prepares or
checks its own inputs. It speaks the real protocol: challenges, Basic and Bearer auth, POST + PUT
uploads.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

import httpx

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


class RigClient:
    def __init__(self, base_url: str, credentials: tuple[str, str] | None = None, ca: Path | None = None):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        verify = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.http = httpx.Client(timeout=60, follow_redirects=True, verify=verify)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def _auth_header(self, challenge: str, scope: str) -> dict[str, str]:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise PermissionError("registry wants basic auth and the rig client has no credentials")
            return {"Authorization": httpx.BasicAuth(*self.credentials)._auth_header}
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scope not in self._tokens:
            query = {"service": fields.get("service", ""), "scope": scope}
            auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
            r = self.http.get(fields["realm"], params=query, auth=auth)
            r.raise_for_status()
            body = r.json()
            self._tokens[scope] = body.get("token") or body["access_token"]
        return {"Authorization": f"Bearer {self._tokens[scope]}"}

    def request(self, method: str, path: str, scope: str, **kw: object) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
        if scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        r = self.http.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]
        if r.status_code == 401 and "www-authenticate" in r.headers:
            self._tokens.pop(scope, None)
            headers.update(self._auth_header(r.headers["www-authenticate"], scope))
            r = self.http.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]
        return r

    @staticmethod
    def scope(repo: str, push: bool = False) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scope = self.scope(repo, push=True)
        if self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope).status_code == 200:
            return digest
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope)
        r.raise_for_status()
        location = r.headers["location"]
        if location.startswith("/"):
            location = self.base_url + location
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}digest={digest}", scope, content=data,
                         headers={"Content-Type": "application/octet-stream"})
        r.raise_for_status()
        return digest

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{ref}", self.scope(repo, push=True), content=body,
                         headers={"Content-Type": media_type})
        r.raise_for_status()
        return r.headers.get("docker-content-digest", "")

    def get_manifest(self, repo: str, ref: str) -> httpx.Response:
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", self.scope(repo),
                            headers={"Accept": MANIFEST_TYPES})

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", self.scope(repo))
        r.raise_for_status()
        return r.content
