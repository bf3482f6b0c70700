"""A Google Cloud login from an Airflow `google_cloud_platform` connection, read as the google provider's
GoogleBaseHook reads it (extras `key_path`, `keyfile_dict`, `credential_config_file`, `scope`, `project`; none:
application-default credentials), with google-auth alone: the provider itself pulls in some 80 packages.

The registry login is `oauth2accesstoken` with an OAuth access token (about an hour), refreshed whenever
google-auth says it is no longer valid, also in the middle of a long copy.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from airflow.sdk.log import mask_secret
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from dmi_provider.errors import DmiError, first_line
from dmi_provider.hooks.connections import cloud_connection
from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.network import Network

DEFAULT_CONN_ID = "google_cloud_default"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
USERNAME = "oauth2accesstoken"
UNSUPPORTED = ("key_secret_name", "impersonation_chain", "idp_issuer_url", "is_anonymous")


@dataclass
class GoogleLogin:
    """Credentials and project of one connection; `registry_login()` is a CredentialSource."""

    conn_id: str
    credentials: Any  # google.auth.credentials.Credentials
    project: str | None
    network: Network

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        session = requests.Session()
        if self.network.proxy:
            session.proxies = {"http": self.network.proxy, "https": self.network.proxy}
        if self.network.ca_bundle:
            session.verify = self.network.ca_bundle
        self._request = Request(session)

    @property
    def who(self) -> str:
        return f"Google Cloud (connection {self.conn_id!r})"

    def token(self) -> str:
        with self._lock:
            if not self.credentials.valid:
                try:
                    self.credentials.refresh(self._request)
                except google.auth.exceptions.TransportError as exc:
                    raise DmiError(f"{self.who}: cannot reach Google's token endpoint ({first_line(exc)}); check "
                                   "the network route and HTTPS_PROXY", retryable=True) from None
                except google.auth.exceptions.RefreshError as exc:
                    raise DmiError(f"{self.who}: Google refused the login ({first_line(exc)}): check the service "
                                   "account key (is it revoked or deleted?) and its scopes") from None
            mask_secret(self.credentials.token)
            return self.credentials.token

    def registry_login(self) -> Credentials:
        return Credentials(USERNAME, self.token(), own_realm=True)


def google_login(conn_id: str | None, network: Network | None = None) -> GoogleLogin:
    conn_id = conn_id or DEFAULT_CONN_ID
    found = cloud_connection(conn_id, DEFAULT_CONN_ID, "type google_cloud_platform with a key_path, keyfile_dict "
                                                       "or credential_config_file extra, or none for ADC")
    extras = found[1] if found else {}
    who = f"Google Cloud (connection {conn_id!r})"
    for key in UNSUPPORTED:
        if extras.get(key) not in (None, "", False):
            raise DmiError(f"{who}: extra {key!r} is not supported by DMI: use key_path, keyfile_dict, "
                           "credential_config_file, or application-default credentials")
    scopes = [s.strip() for s in str(extras.get("scope") or SCOPE).split(",") if s.strip()]
    try:
        credentials, project = _credentials(extras, scopes)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise DmiError(f"{who}: no Google credentials ({first_line(exc)}): give the connection a key_path or "
                       "keyfile_dict extra, or run where application-default credentials exist "
                       "(GOOGLE_APPLICATION_CREDENTIALS, workload identity)") from None
    except (ValueError, KeyError, OSError) as exc:
        raise DmiError(f"{who}: the key cannot be read ({type(exc).__name__}: {first_line(exc)})") from None
    return GoogleLogin(conn_id, credentials, str(extras.get("project") or project or "") or None,
                       network or Network())


def _credentials(extras: dict, scopes: list[str]) -> tuple[Any, str | None]:
    key_path, keyfile = extras.get("key_path"), extras.get("keyfile_dict")
    config = extras.get("credential_config_file")
    if key_path:
        if not str(key_path).endswith(".json"):
            raise ValueError(f"key_path {key_path!r}: only JSON keys are supported")
        creds = service_account.Credentials.from_service_account_file(str(key_path), scopes=scopes)
        return creds, creds.project_id
    if keyfile:
        info = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
        creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        return creds, creds.project_id
    if config:  # workload identity federation: a path or the JSON itself
        text = str(config).strip()
        if text.startswith("{"):
            return google.auth.load_credentials_from_dict(json.loads(text), scopes=scopes)
        return google.auth.load_credentials_from_file(text, scopes=scopes)
    return google.auth.default(scopes=scopes)
