"""The Jinja2 templates of the "Image mirror" pages (dmi_provider/plugins/templates) and the filters they
use. Autoescape is on for every template, so a value from the tracking tables or the query string never
becomes markup; the few filters below return plain text for it to escape. No Airflow import here."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from dmi_provider.config_keys import CLOUD_NAMES
from dmi_provider.tracking.store import when

STATIC = resources.files("dmi_provider.plugins") / "static"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def run_label(run_id: str) -> str:
    """`manual__2026-11-30T02:49:53.99+00:00` -> `manual 11-30 02:49`: short in tables, whole on hover."""
    kind, _, stamp = run_id.partition("__")
    try:
        return f"{kind} {datetime.fromisoformat(stamp):%m-%d %H:%M}"
    except ValueError:
        return run_id if len(run_id) <= 32 else run_id[:31] + "…"


def _path(value: object) -> str:
    """One segment of an Airflow UI address (a run id's slashes and colons quoted too)."""
    return quote(str(value), safe="")


def _query(params: dict[str, object]) -> str:
    return urlencode(params)


@cache
def static_version() -> str:
    """A fingerprint of the static files for their URLs: a new release is not hidden by a cached old file."""
    digest = hashlib.sha256()
    for name in ("dmi.css", "dmi.js"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("dmi_provider.plugins", "templates"), autoescape=select_autoescape(),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters.update(when=lambda v: when(v, "%Y-%m-%d %H:%M"),  # UTC, as the column titles say
                       when_utc=lambda v: when(v, "%Y-%m-%d %H:%M UTC"), human_bytes=human_bytes,
                       run_label=run_label, path=_path, query=_query, quote=lambda v: quote(str(v)))
    env.globals.update(static_version=static_version, cloud_names=CLOUD_NAMES)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def macro(template: str, name: str, *args: Any) -> Markup:
    """One macro of a template (the charts), as markup to put in a page or to test."""
    return Markup(getattr(environment().get_template(template).module, name)(*args))
