"""`dmi copy` as users run it: exit codes, progress, JSON, credentials from where users keep them,
and flat memory on a large layer."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dmi_provider.registry.client import HostSettings, RegistryClient
from dmi_provider.registry.errors import InsecureRedirect, RegistryError
from dmi_provider.registry.network import Network


@pytest.fixture
def tls_server(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/v2/x/blobs/plain")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", cert_path
    server.shutdown()

def test_tls_is_verified_and_https_never_downgrades(tls_server):
    host, ca = tls_server
    unverified = RegistryClient(host)
    with pytest.raises(RegistryError, match=r"TLS certificate of .* not trusted \(self-signed certificate\)") as exc, \
            unverified.open_blob("x", "sha256:" + "0" * 64):
        pass
    assert not exc.value.retryable
    trusting = RegistryClient(host, HostSettings(network=Network(ca_bundle=str(ca))))
    with pytest.raises(InsecureRedirect, match="refusing a redirect from https to http"), \
            trusting.open_blob("x", "sha256:" + "0" * 64):
        pass
