"""An Azure Container Registry login from an Airflow connection, read as the microsoft-azure provider's hooks
read theirs, with azure-identity alone (the provider pulls in some 30 SDKs):

- type `azure_container_registry` with login and password: the admin user or a service principal, as Basic
  credentials;
- type `azure` with login (client id), password (secret) and extra `tenantId`: a service principal;
- otherwise (no connection, or one without a secret): DefaultAzureCredential (workload identity, managed
  identity with the extras `managed_identity_client_id` / `workload_identity_tenant_id`, environment).

An Entra ID token (scope `https://containerregistry.azure.net/.default`) is exchanged at the registry's
`/oauth2/exchange` for an ACR refresh token (about 3 hours), renewed before it expires; the registry client
turns it into access tokens per scope at `/oauth2/token` (username 00000000-0000-0000-0000-000000000000).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from airflow.sdk.log import mask_secret

from dmi_provider.errors import DmiError, first_line
from dmi_provider.hooks.connections import cloud_connection, network_from_extras
from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.errors import registry_error_text
from dmi_provider.registry.network import Network, http_client, transport_error

DEFAULT_CONN_ID = "azure_default"
NULL_USER = "00000000-0000-0000-0000-000000000000"  # tells ACR the password is a refresh token
RENEW_BEFORE = 300.0
PUBLIC_AUTHORITIES = ("login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us")


def audience(host: str) -> str:
    """The Entra ID scope of a registry: sovereign clouds have their own."""
    for suffix, cloud in ((".azurecr.cn", "azure.cn"), (".azurecr.us", "azure.us")):
        if host.split(":")[0].endswith(suffix):
            return f"https://containerregistry.{cloud}/.default"
    return "https://containerregistry.azure.net/.default"


@dataclass
class AcrLogin:
    """One registry's login: fixed Basic credentials, or an Entra identity exchanged for refresh tokens.
    Call it (a CredentialSource) for the login as of now."""

    conn_id: str
    host: str
    network: Network
    basic: Credentials | None = None
    identity: Any = None  # an azure.identity credential
    _refresh: tuple[str, float] | None = field(default=None, repr=False)  # token, renew at (epoch)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def who(self) -> str:
        return f"ACR {self.host} (connection {self.conn_id!r})"

    def __call__(self) -> Credentials:
        if self.basic is not None:
            return self.basic
        with self._lock:
            if self._refresh is None or time.time() >= self._refresh[1]:
                self._refresh = self._exchange()
            return Credentials(NULL_USER, self._refresh[0], refresh_token=True, own_realm=True)

    def _entra_token(self) -> str:
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        try:
            return self.identity.get_token(audience(self.host)).token
        except ClientAuthenticationError as exc:
            raise DmiError(f"{self.who}: Entra ID refused the login ({first_line(exc)}): check the service "
                           "principal's client id, secret and tenantId, or the managed identity") from None
        except AzureError as exc:
            raise DmiError(f"{self.who}: cannot reach Entra ID ({first_line(exc)}); check the network route, "
                           "HTTPS_PROXY and the connection's authority_host", retryable=True) from None

    def _exchange(self) -> tuple[str, float]:
        """POST /oauth2/exchange: Entra ID access token -> ACR refresh token."""
        aad = self._entra_token()
        mask_secret(aad)
        url = f"{'http' if self.network.insecure else 'https'}://{self.host}/oauth2/exchange"
        form = {"grant_type": "access_token", "service": self.host, "access_token": aad}
        with http_client(self.network, timeout=30.0) as client:
            try:
                response = client.post(url, data=form)
            except httpx.TransportError as exc:
                raise transport_error(exc, url, self.network, self.host) from None
        if response.status_code != 200:
            _code, message = registry_error_text(response.content)
            raise DmiError(f"{self.who}: the registry refused the Entra ID token at /oauth2/exchange (HTTP "
                           f"{response.status_code}{' ' + message if message else ''}): the identity needs the "
                           "AcrPush role on this registry (AcrPull for a source)",
                           retryable=response.status_code >= 500)
        try:
            token = str(response.json()["refresh_token"])
        except (ValueError, KeyError, TypeError):
            raise DmiError(f"{self.who}: /oauth2/exchange answered without a refresh_token") from None
        mask_secret(token)
        expires = _expiry(token)
        return token, expires - min(RENEW_BEFORE, max(expires - time.time(), 0) / 4)


def acr_login(conn_id: str | None, host: str | None, network_of: Callable[[str], Network]) -> AcrLogin:
    """The login for `host` (None: the connection's Registry Server); `network_of(host)`: how to reach it."""
    conn_id = conn_id or DEFAULT_CONN_ID
    found = cloud_connection(conn_id, DEFAULT_CONN_ID, "type azure with a service principal, or "
                                                       "azure_container_registry with login and password")
    conn, extras = found if found else (None, {})
    host = host or _host_of(conn)
    if not host:
        raise DmiError(f"connection {conn_id!r}: no registry: set acr-name (or target-registry), or the "
                       "connection's Registry Server (host)")
    network = network_of(host).merge(network_from_extras(extras, f"connection {conn_id!r}"))
    if conn is not None and conn.conn_type == "azure_container_registry" and conn.login and conn.password:
        return AcrLogin(conn_id, host, network, basic=Credentials(conn.login, conn.password, own_realm=True))
    return AcrLogin(conn_id, host, network, identity=_identity(conn, extras, network))


def _identity(conn: Any, extras: dict, network: Network) -> Any:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):  # headers per request
        logging.getLogger(name).setLevel(logging.WARNING)

    options: dict[str, Any] = {}
    authority = str(extras.get("authority_host") or "").strip().rstrip("/")
    if authority:  # a sovereign cloud, Azure Stack, or a stand-in: no discovery at login.microsoftonline.com
        options["authority"] = authority
        options["disable_instance_discovery"] = not authority.removeprefix("https://").startswith(PUBLIC_AUTHORITIES)
    if network.ca_bundle:
        options["connection_verify"] = network.ca_bundle
    if network.proxy:
        options["proxies"] = {"https": network.proxy, "http": network.proxy}
    tenant = extras.get("tenantId") or extras.get("tenant_id")
    if conn is not None and conn.conn_type != "azure_container_registry" and conn.login and conn.password:
        if not tenant:
            raise DmiError(f"connection {conn.conn_id!r}: a service principal needs the tenantId extra")
        return ClientSecretCredential(str(tenant), conn.login, conn.password, **options)
    managed = extras.get("managed_identity_client_id")
    workload = extras.get("workload_identity_tenant_id")
    if managed:
        options["managed_identity_client_id"] = managed
    if workload:
        options["workload_identity_tenant_id"] = workload
    return DefaultAzureCredential(**options)


def _host_of(conn: Any) -> str | None:
    raw = (getattr(conn, "host", None) or "").strip()
    return raw.split("://", 1)[-1].strip("/") or None


def _expiry(token: str) -> float:
    """A JWT's `exp` (epoch seconds); an opaque token is renewed after an hour."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError, RecursionError):
        return time.time() + 3600
