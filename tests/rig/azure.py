"""Azure stand-ins: what azure-identity and an ACR client really talk to.

- Entra ID (HTTPS, with a CA the test made, as azure-identity insists on https): the tenant's OpenID
  configuration and its v2.0 token endpoint for the client-credentials grant of a service principal.
  Tokens are JWTs with `tid`, `aud` and `exp`; a wrong secret or tenant is refused as Entra does (AADSTS…).
- An ACR front (a rig Proxy in front of docker-registry with token auth): `POST /oauth2/exchange` (Entra
  token -> ACR refresh token), `POST /oauth2/token` (refresh token -> access token per scope), `GET
  /oauth2/token` with the admin user's Basic login; it refuses a single PUT above `max_put` bytes (413), as
  ACR refuses large streaming uploads, so only chunked uploads get big blobs in.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from starlette.requests import Request
from starlette.responses import Response

from tests.rig.json_server import JsonHandler, serve
from tests.rig.process import free_port
from tests.rig.proxy import Proxy
from tests.rig.registry import Registry
from tests.rig.tls import LocalCA
from tests.rig.token_server import TokenServer

ACR_AUDIENCE = "https://containerregistry.azure.net"
NULL_USER = "00000000-0000-0000-0000-000000000000"


@dataclass
class Entra:
    """Entra ID for one tenant and its service principals (client id -> secret)."""

    ca: LocalCA
    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    principals: dict[str, str] = field(default_factory=dict)
    token_lifetime: int = 3600
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    issued: int = 0
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def authority(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def add_principal(self) -> tuple[str, str]:
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(24)
        self.principals[client_id] = secret
        return client_id, secret

    def verify(self, token: str) -> dict | None:
        """The claims of a live token this Entra issued for ACR, else None."""
        try:
            return jwt.decode(token, self.secret, algorithms=["HS256"], audience=ACR_AUDIENCE)
        except jwt.PyJWTError:
            return None

    def _token(self, tenant: str, form: dict[str, list[str]]) -> tuple[int, dict]:
        def refuse(status: int, error: str, text: str) -> tuple[int, dict]:
            with self._lock:
                self.refused.append(text)
            return status, {"error": error, "error_description": text,
                            "error_codes": [int(re.match(r"AADSTS(\d+)", text).group(1))]}  # type: ignore[union-attr]

        if tenant != self.tenant:
            return refuse(400, "invalid_request", f"AADSTS900023: Specified tenant identifier '{tenant}' is "
                                                  "neither a valid DNS name, nor a valid external domain.")
        client_id, secret = form.get("client_id", [""])[0], form.get("client_secret", [""])[0]
        if form.get("grant_type", [""])[0] != "client_credentials":
            return refuse(400, "unsupported_grant_type", "AADSTS700000: only client_credentials here")
        if client_id not in self.principals:
            return refuse(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{client_id}' "
                                                      "was not found in the directory.")
        if self.principals[client_id] != secret:
            return refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        scope = form.get("scope", [""])[0]
        if scope != f"{ACR_AUDIENCE}/.default":
            return refuse(400, "invalid_scope", f"AADSTS70011: The provided value for scope {scope} is not valid.")
        now = int(time.time())
        token = jwt.encode({"aud": ACR_AUDIENCE, "tid": tenant, "oid": client_id, "iat": now,
                            "exp": now + self.token_lifetime}, self.secret, algorithm="HS256")
        with self._lock:
            self.issued += 1
        return 200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                     "ext_expires_in": self.token_lifetime, "access_token": token}

    def _discovery(self, tenant: str) -> dict:
        base = f"{self.authority}/{tenant}"
        return {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys", "response_types_supported": ["code", "token"],
                "tenant_region_scope": "EU"}

    def start(self) -> Entra:
        entra = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                parts = urlparse(self.path).path.strip("/").split("/")
                if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    self.answer(200, entra._discovery(parts[0]))
                else:
                    self.answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                parts = urlparse(self.path).path.strip("/").split("/")
                form = parse_qs(self.form_body().decode())
                if parts[1:] == ["oauth2", "v2.0", "token"]:
                    self.answer(*entra._token(parts[0], form))
                else:
                    self.answer(404, {"error": "not_found"})

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.ca.server("entra"))
        self._httpd = serve(Handler, "entra-stand-in", context)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class AcrFront(Proxy):
    """The registry's own host: its token endpoints, its refusal of large single PUTs, the rest forwarded."""

    def __init__(self, upstream: str, port: int, entra: Entra, tokens: TokenServer, admin: tuple[str, str] | None,
                 refresh_lifetime: int = 10800, max_put: int = 4 * 1024 * 1024):
        super().__init__(upstream)
        self.port = port
        self.entra, self.tokens, self.admin = entra, tokens, admin
        self.refresh_lifetime, self.max_put = refresh_lifetime, max_put
        self.secret = secrets.token_bytes(32)
        self.exchanges: list[dict] = []  # the form fields of each /oauth2/exchange
        self.token_grants: list[dict] = []  # the form fields (or "basic") of each /oauth2/token
        self.refused_puts = 0
        self.oauth_refused: list[str] = []
        self.attributes: dict[str, dict] = {}  # repository -> ACR's changeableAttributes (writeEnabled …)
        self.locked_writes = 0  # manifest PUTs refused because a repository had writeEnabled false

    async def app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path, method = request.url.path, request.method
        if path in ("/oauth2/exchange", "/oauth2/token"):
            status, body = await self._oauth(request, path, method)
            self._record(method, path, status)
            await Response(json.dumps(body), status, media_type="application/json")(scope, receive, send)
            return
        if path.startswith("/acr/v1/"):
            status, body = await self._repository_attributes(request, path.removeprefix("/acr/v1/"), method)
            self._record(method, path, status)
            challenge = {"WWW-Authenticate": f'Bearer realm="http://{self.host}/oauth2/token",service="{self.host}"'}
            await Response(json.dumps(body), status, media_type="application/json",
                           headers=challenge if status == 401 else None)(scope, receive, send)
            return
        name = path.removeprefix("/v2/").partition("/manifests/")[0]
        if method in ("PUT", "DELETE") and "/manifests/" in path:
            wanted = "writeEnabled" if method == "PUT" else "deleteEnabled"
            if self.attributes.get(name, {}).get(wanted) is False:
                self.locked_writes += method == "PUT"
                self._record(method, path, 403)
                body = json.dumps({"errors": [{"code": "DENIED", "message": "The operation is disallowed on this "
                                               "registry, repository or image."}]})
                await Response(body, 403, media_type="application/json")(scope, receive, send)
                return
        size = int(request.headers.get("content-length") or 0)
        if method == "PUT" and "/blobs/uploads/" in path and size > self.max_put:
            self.refused_puts += 1
            self._record(method, path, 413)
            await Response(b"request entity too large", 413)(scope, receive, send)
            return
        await super().app(scope, receive, send)

    async def _oauth(self, request: Request, path: str, method: str) -> tuple[int, dict]:
        form = {k: v for k, v in (await request.form()).multi_items()} if method == "POST" else {}
        service = self.host
        if path == "/oauth2/exchange":
            self.exchanges.append(dict(form))
            claims = self.entra.verify(str(form.get("access_token", "")))
            if form.get("grant_type") != "access_token" or form.get("service") != service or claims is None:
                return self._refuse("the Entra ID access token is not valid for this registry")
            now = int(time.time())
            refresh = jwt.encode({"sub": claims["oid"], "tid": claims["tid"], "aud": service, "iat": now,
                                  "exp": now + self.refresh_lifetime, "grant_type": "refresh_token"},
                                 self.secret, algorithm="HS256")
            return 200, {"refresh_token": refresh}
        if method == "GET":  # docker's basic flow: the admin user
            self.token_grants.append({"basic": True, **dict(request.query_params)})
            user = self._basic_user(request.headers.get("authorization", ""))
            if user is None:
                return self._refuse("invalid username or password")
            scopes = request.query_params.getlist("scope")
            return 200, {"access_token": self.tokens.token(user, scopes)["token"]}
        self.token_grants.append(dict(form))
        try:
            claims = jwt.decode(str(form.get("refresh_token", "")), self.secret, algorithms=["HS256"],
                                audience=service)
        except jwt.PyJWTError as exc:
            return self._refuse(f"the refresh token is not valid ({exc})")
        if form.get("grant_type") != "refresh_token" or form.get("service") != service:
            return self._refuse("grant_type must be refresh_token for this service")
        scopes = str(form.get("scope", "")).split()
        return 200, {"access_token": self.tokens.token(claims["sub"], scopes)["token"]}

    async def _repository_attributes(self, request: Request, name: str, method: str) -> tuple[int, dict]:
        """ACR's repository properties (GET, and PATCH of writeEnabled, deleteEnabled, listEnabled, readEnabled),
        for a bearer token with metadata_read / metadata_write on the repository."""
        try:
            claims = jwt.decode(request.headers.get("authorization", "").removeprefix("Bearer "),
                                self.tokens.key.public_key(), algorithms=["RS256"], audience=self.tokens.service,
                                options={"verify_exp": False})
        except jwt.PyJWTError:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        need = "metadata_write" if method == "PATCH" else "metadata_read"
        if not any(a["name"] == name and need in a["actions"] for a in claims.get("access", [])):
            return 403, {"errors": [{"code": "DENIED", "message": f"requires {need}"}]}
        attributes = self.attributes.setdefault(name, {"deleteEnabled": True, "writeEnabled": True,
                                                       "listEnabled": True, "readEnabled": True})
        if method == "PATCH":
            attributes.update({k: bool(v) for k, v in (await request.json()).items() if k in attributes})
        return 200, {"registry": self.host, "imageName": name, "changeableAttributes": dict(attributes)}

    def _basic_user(self, header: str) -> str | None:
        if not header.lower().startswith("basic ") or self.admin is None:
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if (user, password) == self.admin else None

    def _refuse(self, message: str) -> tuple[int, dict]:
        self.oauth_refused.append(message)
        return 401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]}


@dataclass
class AzureStandIn:
    root: Path
    ca: LocalCA
    token_expires_in: int = 300  # the registry's access tokens
    entra: Entra | None = None
    front: AcrFront | None = None
    registry: Registry | None = None
    admin: tuple[str, str] = ("mirroracr", "admin-password-1")

    @property
    def host(self) -> str:
        assert self.front is not None
        return self.front.host

    def start(self) -> AzureStandIn:
        self.entra = Entra(self.ca).start()
        port = free_port()
        tokens = TokenServer(service=f"127.0.0.1:{port}", allow_anonymous=False, expires_in=self.token_expires_in)
        self.registry = Registry("acr", self.root / "acr-registry", auth="token", token_server=tokens,
                                 realm=f"http://127.0.0.1:{port}/oauth2/token").start()
        self.front = AcrFront(self.registry.url, port, self.entra, tokens, self.admin).start()  # type: ignore[assignment]
        return self

    def stop(self) -> None:
        for part in (self.front, self.registry, self.entra):
            if part is not None:
                part.stop()
