"""How one registry host is reached (a proxy, a private CA, plain HTTP), and what a failure to reach it
means, said in one line with what to do. Plain Python: no Airflow import here.

Without settings a client follows the environment, as curl and the cloud SDKs do: HTTPS_PROXY,
HTTP_PROXY and NO_PROXY pick the proxy; the system's CA store, SSL_CERT_FILE / SSL_CERT_DIR and
Mozilla's bundle (certifi) decide whom TLS trusts. A registry's own `ca_bundle` is trusted besides those.
"""

from __future__ import annotations

import functools
import socket
import ssl
import stat
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from dmi_provider.registry.errors import MaybePlainHTTP, RegistryError, TLSUntrusted

if TYPE_CHECKING:  # httpx is imported where a client is made: config.ini's checks below need none of it
    import httpx

PEM_START = "-----BEGIN CERTIFICATE-----"
MAX_CA_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Network:
    """How to reach one registry: `proxy` (an http:// URL; None follows the environment), `ca_bundle` (a PEM
    file or PEM text trusted besides the system store), `insecure` (plain HTTP, for registries named so)."""

    proxy: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False

    def merge(self, other: Network) -> Network:
        """`other`'s settings where it has them (a connection's extras over the settings of a section)."""
        return Network(other.proxy or self.proxy, other.ca_bundle or self.ca_bundle, other.insecure or self.insecure)


def check_proxy(value: str) -> str:
    """A proxy URL as httpx takes it: http://[user:password@]host:port (https:// and socks5:// too).
    ValueError says what is wrong (the caller says where: a key, a connection, a flag)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
        raise ValueError(f"proxy {redact_url(value)!r} is not a proxy URL: write http://host:port "
                         "(or http://user:password@host:port)")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"proxy {redact_url(value)!r} has a path: write http://host:port")
    return value.strip()


def check_ca_bundle(value: str) -> str:
    """A PEM file that exists and holds a certificate (read at most MAX_CA_BYTES), or PEM text itself (a
    connection extra). ValueError says what is wrong."""
    text = value.strip()
    if text.startswith(PEM_START):
        return text
    path = Path(text).expanduser()
    try:
        # Opening a FIFO or a device would block (dmi validate, and so DAG parsing, would hang): stat first.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"CA bundle {text!r} is not a regular file: give a PEM file with the CA's certificate")
        with open(path, "rb") as handle:
            head = handle.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"CA bundle {text!r} cannot be read ({exc.strerror or exc}): give a PEM file with the "
                         "CA's certificate") from None
    if len(head) > MAX_CA_BYTES:
        raise ValueError(f"CA bundle {text!r} is over {MAX_CA_BYTES >> 20} MiB: not a CA bundle")
    if PEM_START.encode() not in head:
        raise ValueError(f"CA bundle {text!r} holds no PEM certificate ({PEM_START} ...)")
    return str(path)


@functools.lru_cache(maxsize=32)
def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """One verifying context per CA bundle, shared by every client of the process (building one costs
    tens of milliseconds): the system store (which honours SSL_CERT_FILE / SSL_CERT_DIR), Mozilla's
    bundle as httpx trusts by default, and the registry's own CA."""
    import certifi

    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        if ca_bundle.startswith(PEM_START):
            context.load_verify_locations(cadata=ca_bundle)
        else:
            context.load_verify_locations(cafile=ca_bundle)
    return context


def http_client(network: Network, *, timeout: float, connect: float = 15.0, **kw: object) -> httpx.Client:
    """An httpx client for one registry: its proxy (else the environment's), its trust, no SSL context
    at all for plain HTTP."""
    import httpx

    verify: ssl.SSLContext | bool = False if network.insecure else ssl_context(network.ca_bundle)
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=connect), verify=verify, proxy=network.proxy,
                        trust_env=True, **kw)  # type: ignore[arg-type]


def redact_url(url: str) -> str:
    """A URL without its userinfo (proxy URLs carry a login, or a token as the user: `http://TOKEN@host`)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = f"***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def proxy_for(url: str, network: Network) -> str | None:
    """The proxy a request to `url` goes through: the registry's own, else the environment's (unless
    NO_PROXY names the host)."""
    if network.proxy:
        return network.proxy
    parts = urlsplit(url)
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 (not in typeshed's stubs)
    if parts.hostname and bypass(parts.hostname):
        return None
    found = urllib.request.getproxies_environment()
    return found.get(parts.scheme) or found.get("all")


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or {'https': 443, 'http': 80}.get(parts.scheme)}"


def transport_error(exc: httpx.TransportError, url: str, network: Network, what: str) -> RegistryError:
    """One line for a request that got no HTTP answer: which host (or proxy), what happened, what to do.
    `what` names the registry (and its role) for the reader."""
    import httpx

    causes = _causes(exc)
    proxy = proxy_for(url, network)
    via = f" through proxy {redact_url(proxy)}" if proxy else ""
    host = _host(url)
    if isinstance(exc, httpx.ProxyError) or (proxy and isinstance(exc, httpx.ConnectError)
                                             and not any(isinstance(c, ssl.SSLError) for c in causes)):
        return _proxy_error(exc, causes, redact_url(proxy or "?"), host, what)
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = tls.verify_message or tls.reason or str(tls)
        return TLSUntrusted(f"{what}: TLS certificate of {host} not trusted ({reason}){via}", url=url,
                            retryable=False)
    if tls is not None and "WRONG_VERSION_NUMBER" in str(tls):
        return MaybePlainHTTP(f"{what}: TLS handshake with {host} failed ({tls.reason or tls}){via}; the registry "
                              "may speak plain HTTP", url=url, retryable=False)
    if tls is not None:
        return RegistryError(f"{what}: TLS handshake with {host} failed ({tls.reason or tls}){via}; check that the "
                             "registry serves TLS on this port", url=url, retryable=False)
    dns = next((c for c in causes if isinstance(c, socket.gaierror)), None)
    if dns is not None:
        temporary = dns.errno == socket.EAI_AGAIN
        return RegistryError(f"{what}: cannot resolve {urlsplit(url).hostname} (DNS: {dns.strerror}); check the "
                             "registry's name, or reach it through a proxy (HTTPS_PROXY)", url=url,
                             retryable=temporary)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        error = RegistryError(f"{what}: connection refused by {host}: nothing listens there (wrong host or port, "
                              "or the registry is down)", url=url, retryable=True)
    elif isinstance(exc, httpx.TimeoutException):
        error = RegistryError(f"{what}: no answer from {host}{via} in time ({type(exc).__name__}); a firewall may "
                              "drop the traffic: check the route, or set HTTPS_PROXY", url=url, retryable=True)
    elif isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):  # ours to mend: asking again won't
        return RegistryError(f"{what}: {type(exc).__name__} talking to {host}{via}: {exc}", url=url, retryable=False)
    else:
        error = RegistryError(f"{what}: {type(exc).__name__} talking to {host}{via}: {exc}", url=url, retryable=True)
    error.outage = True  # a registry restarting looks like this: worth the policy's whole time budget
    return error


def _proxy_error(exc: BaseException, causes: list[BaseException], proxy: str, host: str, what: str) -> RegistryError:
    text = str(exc)
    if text.startswith(("407", "401")):  # tinyproxy, for one, answers wrong credentials with 401
        has_login = "***@" in proxy
        hint = ("it refused the user and password in the proxy URL" if has_login
                else "put them in the proxy URL: http://USER:PASSWORD@host:port")
        return RegistryError(f"{what}: proxy {proxy} requires authentication ({text[:3]}); {hint}", retryable=False)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return RegistryError(f"{what}: proxy {proxy} refused the connection: is it running, and is the proxy "
                             "setting (HTTPS_PROXY or the registry's proxy) right?", retryable=True)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return RegistryError(f"{what}: cannot resolve the proxy's host in {proxy}: check HTTPS_PROXY or the "
                             "registry's proxy setting", retryable=False)
    status = text.split(" ", 1)[0]
    retryable = status.isdigit() and int(status) >= 500 and status != "501"
    return RegistryError(f"{what}: proxy {proxy} could not take the request to {host} ({text}); if the proxy "
                         "filters hosts, ask for the registry to be allowed, or bypass it with NO_PROXY",
                         retryable=retryable)

