"""Credentials and databases from Airflow connections, passwords masked the moment they are read.

Airflow is imported only when a connection is read: `dmi copy` and `dmi sync` without connections start in a
fraction of the time."""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dmi_provider.errors import DmiError
from dmi_provider.registry.auth import Credentials, CredentialSource
from dmi_provider.registry.network import Network, check_ca_bundle, check_proxy
from dmi_provider.tracking.outcome import default_url

DEFAULT_TRACKING_CONN_ID = "dmi_tracking"
REGISTRY_CONN_TYPE = "container_registry"


@dataclass(frozen=True)
class RegistryLogin:
    """What a registry connection gives: a login, and how to reach the registry (its extras)."""

    credentials: Credentials | CredentialSource | None = None
    network: Network = field(default_factory=Network)


def registry_login(conn_id: str | None) -> RegistryLogin:
    """A registry's login and network settings from a connection: DMI's `container_registry` type, the docker
    provider's `docker` type or any other with login and password; extras `proxy`, `ca_bundle`, `insecure`."""
    if not conn_id:
        return RegistryLogin()
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise DmiError(f"connection {conn_id!r} does not exist: create it (type {REGISTRY_CONN_TYPE}, or any type "
                       "with login and password), or remove the conn-id from the section") from None
    return login_from(conn, conn_id)


def mask_secret(value: str) -> None:
    """Airflow's masking of a secret in logs (Airflow is loaded: a connection was just read)."""
    from airflow.sdk.log import mask_secret as mask

    mask(value)


def login_from(conn: Any, conn_id: str) -> RegistryLogin:
    if conn.password:
        mask_secret(conn.password)
    network = network_from_extras(_extras(conn, conn_id), f"connection {conn_id!r}")
    if not conn.login:
        if conn.password:
            raise DmiError(f"connection {conn_id!r} has a password but no login: set the registry's user name")
        return RegistryLogin(None, network)
    return RegistryLogin(Credentials(conn.login, conn.password or ""), network)


def _extras(conn: Any, conn_id: str, conn_type: str = REGISTRY_CONN_TYPE) -> dict:
    try:
        extras = json.loads(conn.extra) if conn.extra else {}
    except ValueError:
        raise DmiError(f"connection {conn_id!r}: extra is not JSON") from None
    if not isinstance(extras, dict):
        raise DmiError(f"connection {conn_id!r}: extra is not a JSON object")
    prefix = f"extra__{conn_type}__"  # how older connection forms stored their fields
    return {k.removeprefix(prefix): v for k, v in extras.items()}


def cloud_connection(conn_id: str, default: str, what: str) -> tuple[Any, dict] | None:
    """(connection, its extras) of a cloud login; None when the cloud's default connection does not exist
    (then the environment's identity is used, as the cloud SDKs do). A named connection must exist."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id == default:
            return None
        raise DmiError(f"connection {conn_id!r} does not exist: create it ({what}), or remove the conn-id from the "
                       "section") from None
    if conn.password:
        mask_secret(conn.password)
    extras = _extras(conn, conn_id, conn.conn_type or "")
    for key in ("keyfile_dict", "key_json", "client_secret"):
        if extras.get(key):
            mask_secret(extras[key] if isinstance(extras[key], str) else json.dumps(extras[key]))
    return conn, extras


def public_key_text(kind: str, ref: str) -> str:
    """A verify key held by Airflow: a connection's extra `public_key`, else its password; or a variable."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    if kind == "variable":
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType

        try:
            return str(Variable.get(ref))
        except (AirflowRuntimeError, KeyError) as exc:  # the Task SDK: AirflowRuntimeError(VARIABLE_NOT_FOUND)
            error = getattr(getattr(exc, "error", None), "error", None)
            if isinstance(exc, AirflowRuntimeError) and error != ErrorType.VARIABLE_NOT_FOUND:
                raise
            raise DmiError(f"verify-keys: variable {ref!r} does not exist: create it with the public key's PEM "
                           "text, or change verify-keys") from None
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(ref)
    except AirflowNotFoundException:
        raise DmiError(f"verify-keys: connection {ref!r} does not exist: create it (the PEM text in its extra "
                       "public_key, or its password), or change verify-keys") from None
    text = _extras(conn, ref).get("public_key") or conn.password
    if not text:
        raise DmiError(f"verify-keys: connection {ref!r} holds no key: put the PEM text in its extra public_key")
    return str(text)


def network_from_extras(extras: dict, where: str) -> Network:
    proxy, ca_bundle, insecure = extras.get("proxy"), extras.get("ca_bundle"), extras.get("insecure", False)
    try:
        proxy = check_proxy(str(proxy)) if proxy else None
        ca_bundle = check_ca_bundle(str(ca_bundle)) if ca_bundle else None
    except ValueError as exc:
        raise DmiError(f"{where}: {exc}") from None
    secret = urlsplit(proxy).password if proxy else None
    if secret:
        mask_secret(secret)
    if isinstance(insecure, str):
        insecure = insecure.strip().lower() in ("true", "yes", "on", "1")
    return Network(proxy or None, ca_bundle or None, bool(insecure))


def tracking_url(conn_id: str | None, db_path: str | None, *, server: bool = False, cli: bool = False) -> str:
    """The tracking database: the connection when it exists, else SQLite at DB_PATH or under AIRFLOW_HOME.

    Tasks and the CLI see connections through the task SDK (environment, secrets backends); the
    api-server (`server=True`, the UI plugin) also sees those stored in the metadata database. Outside a
    task (`cli=True`) only the environment and a configured secrets backend can hold one: when neither
    can, Airflow (a second to import) is not loaded at all."""
    if cli and not may_hold_connection(conn_id or DEFAULT_TRACKING_CONN_ID):
        return default_url(db_path)
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = conn_id or DEFAULT_TRACKING_CONN_ID
    conn: Any
    try:
        if server:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(conn_id)
        else:
            conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # the same class on both sides
        return default_url(db_path)
    return sqlalchemy_url(conn)


def may_hold_connection(conn_id: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a process outside a task could find the connection: the task SDK's chain there is the
    environment (AIRFLOW_CONN_*) and the secrets backend of Airflow's configuration (no metadata database)."""
    environ = os.environ if environ is None else environ
    if f"AIRFLOW_CONN_{conn_id.upper()}" in environ:
        return True
    if environ.get("_AIRFLOW_PROCESS_CONTEXT") == "server":  # the metadata database is in the chain there
        return True
    if any(k.startswith(("AIRFLOW__SECRETS__BACKEND", "AIRFLOW__WORKERS__SECRETS_BACKEND")) and v.strip()
           for k, v in environ.items()):
        return True
    home = environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    path = environ.get("AIRFLOW_CONFIG") or os.path.join(home, "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return True  # a file we cannot judge: ask Airflow
    return any(parser.get(section, k, fallback="").strip() for section, names in (
        ("secrets", ("backend", "backend_cmd", "backend_secret")),
        ("workers", ("secrets_backend", "secrets_backend_cmd", "secrets_backend_secret"))) for k in names)


def sqlalchemy_url(conn: Any) -> str:
    """An Airflow connection's URI as SQLAlchemy wants it (postgres:// -> postgresql+psycopg2://)."""
    if conn.password:
        mask_secret(conn.password)
    uri = conn.get_uri()
    for old, new in (("postgres://", "postgresql://"), ("postgresql://", "postgresql+psycopg2://")):
        if uri.startswith(old):
            uri = new + uri[len(old):]
    return uri
