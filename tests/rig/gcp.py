"""Google Artifact Registry stand-in: what google-auth and the Artifact Registry client really talk to.

- An OAuth 2.0 token endpoint for service-account keys (the JWT-bearer grant): the assertion's RS256
  signature is checked against the key the test generated, its audience and scope too; access tokens live
  `token_lifetime` seconds and die then.
- The Artifact Registry REST API for what DMI calls: get and create a repository, and the long-running
  operation of a create. Unknown projects answer 403 as Google does; unknown locations 400.
- The data plane: a docker-registry with token auth whose token service takes `oauth2accesstoken` with a live
  access token, and grants push only inside an AR repository that exists (GAR does not create them on push).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.rig.json_server import JsonHandler, serve
from tests.rig.registry import Registry
from tests.rig.token_server import TokenServer

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REPOSITORY = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/repositories/([^/]+)$")
REPOSITORIES = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/repositories$")
OPERATION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/]+)$")


@dataclass
class GoogleStandIn:
    root: Path
    project: str = "dmi-test-project"
    location: str = "europe-west3"  # the registry below plays LOCATION-docker.pkg.dev
    token_lifetime: int = 3600
    locations: tuple[str, ...] = ("us", "europe", "europe-west3", "us-central1")
    repositories: dict[str, dict] = field(default_factory=dict)  # full name -> Repository JSON
    operations: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    grants: int = 0  # JWT-bearer exchanges answered
    api_calls: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = f"mirror@{self.project}.iam.gserviceaccount.com"
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.registry: Registry | None = None

    # -- what a test hands to DMI ------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def key_info(self, email: str | None = None, key: rsa.RSAPrivateKey | None = None) -> dict:
        """A service-account key file's JSON, its token_uri here."""
        pem = (key or self.key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project, "private_key_id": uuid.uuid4().hex,
                "private_key": pem, "client_email": email or self.client_email, "client_id": "1234567890",
                "token_uri": f"{self.url}/token"}

    def write_key(self, path: Path, **kw: object) -> Path:
        path.write_text(json.dumps(self.key_info(**kw)))  # type: ignore[arg-type]
        return path

    @property
    def host(self) -> str:
        assert self.registry is not None
        return self.registry.host

    def mint(self, lifetime: int = 3600) -> tuple[str, str]:
        """A registry login for the rig's own pushes and reads (what `gcloud auth print-access-token` gives)."""
        token = f"ya29.rig-{secrets.token_urlsafe(16)}"
        with self._lock:
            self.tokens[token] = time.time() + lifetime
        return "oauth2accesstoken", token

    def add_repository(self, repository: str) -> str:
        """An AR repository made outside DMI (by the rig, to seed a source)."""
        name = f"projects/{self.project}/locations/{self.location}/repositories/{repository}"
        self.repositories.setdefault(name, {"name": name, "format": "DOCKER", "mode": "STANDARD_REPOSITORY"})
        return f"{self.project}/{repository}"

    # -- rules --------------------------------------------------------------------------------------
    def live(self, token: str) -> bool:
        with self._lock:
            return self.tokens.get(token, 0) > time.time()

    def api_token_ok(self, token: str) -> bool:
        """An access token, or a self-signed JWT (what the API client sends for a service-account key)."""
        if self.live(token):
            return True
        try:
            claims = jwt.decode(token, self.key.public_key(), algorithms=["RS256"], options={"verify_aud": False})
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.client_email

    def push_ok(self, name: str) -> bool:
        project, _, rest = name.partition("/")
        repository = rest.partition("/")[0]
        return f"projects/{project}/locations/{self.location}/repositories/{repository}" in self.repositories

    # -- HTTP ---------------------------------------------------------------------------------------
    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type", [""])[0] != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form.get("assertion", [""])[0], self.key.public_key(), algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE)  # what google-auth signs for, whatever token_uri
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature. ({exc})"}
        if claims.get("iss") != self.client_email:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        if SCOPE not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope", "error_description": "cloud-platform scope required"}
        token = f"ya29.{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime
            self.grants += 1
        return 200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, dict]:
        with self._lock:
            self.api_calls.append((method, path))
        if OPERATION.match(path) and method == "GET":
            name = path.removeprefix("/v1/")
            return (200, self.operations[name]) if name in self.operations else _error(404, "NOT_FOUND", name)
        found = REPOSITORY.match(path) or REPOSITORIES.match(path)
        if not found:
            return _error(404, "NOT_FOUND", f"no route {path}")
        project, location = found.group(1), found.group(2)
        if project != self.project:
            return _error(403, "PERMISSION_DENIED", f"Permission 'artifactregistry.repositories.get' denied on "
                                                    f"resource '//artifactregistry.googleapis.com/projects/{project}"
                                                    "' (or it may not exist).")
        if location not in self.locations:
            return _error(400, "INVALID_ARGUMENT", f"Invalid resource field value in the request: location "
                                                   f"'{location}' is not a valid location.")
        if method == "GET" and REPOSITORY.match(path):
            name = path.removeprefix("/v1/")
            if name not in self.repositories:
                return _error(404, "NOT_FOUND", f"Requested entity was not found: {name}")
            return 200, self.repositories[name]
        if method == "POST" and REPOSITORIES.match(path):
            repository_id = query.get("repositoryId", [""])[0]
            name = f"{path.removeprefix('/v1/')}/{repository_id}"
            if name in self.repositories:
                return _error(409, "ALREADY_EXISTS", f"the repository already exists: {name}")
            repository = json.loads(body or b"{}")
            repository.update({"name": name, "createTime": "2026-11-30T00:00:00Z",
                               "registryUri": f"{location}-docker.pkg.dev/{project}/{repository_id}"})
            operation = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
            with self._lock:
                self.repositories[name] = repository
                self.operations[operation] = {
                    "name": operation, "done": True,
                    "response": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.Repository",
                                 **repository}}
            return 200, {"name": operation, "done": False}
        return _error(405, "UNIMPLEMENTED", f"{method} {path}")

    def start(self) -> GoogleStandIn:
        stand_in = self

        class Handler(JsonHandler):
            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                body = self.form_body()
                if url.path == "/token" and method == "POST":
                    self.answer(*stand_in._grant(parse_qs(body.decode())))
                    return
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or not stand_in.api_token_ok(auth[7:]):
                    self.answer(*_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                                                "credentials."))
                    return
                self.answer(*stand_in._api(method, url.path, parse_qs(url.query), body))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._httpd = serve(Handler, "google-stand-in")
        token_server = TokenServer(service=f"{self.location}-docker.pkg.dev", allow_anonymous=False,
                                   password_ok=lambda user, token: user == "oauth2accesstoken" and self.live(token),
                                   push_ok=self.push_ok)
        self.registry = Registry("gar", self.root / "gar-registry", auth="token", token_server=token_server).start()
        return self

    def stop(self) -> None:
        if self.registry is not None:
            self.registry.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}
