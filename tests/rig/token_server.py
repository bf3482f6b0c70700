"""A token server that behaves like Docker Hub's auth service (auth.docker.io/token).

docker-registry's `auth.token` checks the JWTs it signs. Anonymous clients get pull-only tokens;
known users get what they ask for (pull, push). Tokens expire after `expires_in` seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ISSUER = "dmi-test-token-issuer"
# docker-registry accepts a token up to 60 s past its exp (clock skew leeway); the claim is moved
# back by as much so that a token really dies after `expires_in` seconds, as a client is told.
REGISTRY_LEEWAY = 60


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The key id docker-registry computes for a trusted key (libtrust's format)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass
class TokenServer:
    service: str
    users: dict[str, str] = field(default_factory=dict)
    expires_in: int = 300
    allow_anonymous: bool = True
    # What clients are told, when a test wants them to hold on to tokens that already died.
    claimed_expires_in: int | None = None
    issued: list[dict] = field(default_factory=list)
    refused: int = 0
    # A cloud's rules: which passwords a user may log in with (GAR: a live OAuth token), and where it may push
    # (GAR: inside an Artifact Registry repository that exists).
    password_ok: Callable[[str, str], bool] | None = None
    push_ok: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = libtrust_key_id(self.key.public_key())
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def write_cert(self, path: Path) -> Path:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dmi test token issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    # -- token logic ---------------------------------------------------------------------------
    def grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            writer = user and (self.push_ok is None or self.push_ok(name))
            allowed = {"pull", "push", "metadata_read", "metadata_write"} if writer else {"pull"}
            granted = [a for a in actions if a in allowed]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        return access

    def token(self, user: str | None, scopes: list[str]) -> dict:
        now = int(time.time())
        access = self.grant(user, scopes)
        claims = {
            "iss": ISSUER, "sub": user or "", "aud": self.service, "iat": now, "nbf": now - 1,
            "exp": now + self.expires_in - REGISTRY_LEEWAY, "jti": uuid.uuid4().hex, "access": access,
        }
        signed = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        with self._lock:
            self.issued.append({"user": user, "scopes": scopes, "access": access})
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        told = self.claimed_expires_in or self.expires_in
        return {"token": signed, "access_token": signed, "expires_in": told, "issued_at": issued_at}

    def check_basic(self, header: str | None) -> tuple[bool, str | None]:
        if not header:
            return self.allow_anonymous, None
        if not header.lower().startswith("basic "):
            return False, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False, None
        if self.password_ok is not None:
            return self.password_ok(user, password), user
        return self.users.get(user) == password, user

    # -- HTTP ----------------------------------------------------------------------------------
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/token":
                    self.send_error(404)
                    return
                query = parse_qs(url.query)
                ok, user = server.check_basic(self.headers.get("Authorization"))
                if not ok or query.get("service", [server.service])[0] != server.service:
                    with server._lock:
                        server.refused += 1
                    body = json.dumps({"details": "incorrect username or password"}).encode()
                    self.send_response(401)
                else:
                    body = json.dumps(server.token(user, query.get("scope", []))).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="token-server").start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
