"""Credentials and databases from Airflow connections, passwords masked the moment they are read."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from dmi_provider.errors import DmiError
from dmi_provider.registry.auth import Credentials
from dmi_provider.tracking.store import default_url

DEFAULT_TRACKING_CONN_ID = "dmi_tracking"


def registry_credentials(conn_id: str | None) -> Credentials | None:
    """A registry login from a connection's login and password (any connection type)."""
    if not conn_id:
        return None
    conn = BaseHook.get_connection(conn_id)
    if not conn.login:
        raise DmiError(f"connection {conn_id!r} has no login: set login and password for the registry")
    password = conn.password or ""
    if password:
        mask_secret(password)
    return Credentials(conn.login, password)


def tracking_url(conn_id: str | None, db_path: str | None, *, server: bool = False) -> str:
    """The tracking database: the connection when it exists, else SQLite at DB_PATH or under AIRFLOW_HOME.

    Tasks and the CLI see connections through the task SDK (environment, secrets backends); the
    api-server (`server=True`, the UI plugin) also sees those stored in the metadata database."""
    conn_id = conn_id or DEFAULT_TRACKING_CONN_ID
    try:
        if server:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(conn_id)
        else:
            conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # the same class on both sides
        return default_url(db_path)
    return sqlalchemy_url(conn)


def sqlalchemy_url(conn: Any) -> str:
    """An Airflow connection's URI as SQLAlchemy wants it (postgres:// -> postgresql+psycopg2://)."""
    if conn.password:
        mask_secret(conn.password)
    uri = conn.get_uri()
    for old, new in (("postgres://", "postgresql://"), ("postgresql://", "postgresql+psycopg2://")):
        if uri.startswith(old):
            uri = new + uri[len(old):]
    return uri
