"""What a registry host told us about itself that is worth remembering across processes: whether it has the
OCI referrers API. Every Airflow task is a new process; without this each would probe again (a 404 per task
on registries without the API). Kept six hours, per machine, beside the blob-location cache; any error: forgotten."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from dmi_provider.registry.locations import default_cache_path

TTL = 6 * 3600.0


def _path() -> Path:
    return default_cache_path().with_name("registry-hosts.json")


def _load() -> dict:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recall(base_url: str, key: str) -> bool | None:
    entry = _load().get(base_url)
    if not isinstance(entry, dict) or not isinstance(entry.get(key), list) or len(entry[key]) != 2:
        return None
    value, at = entry[key]
    fresh = isinstance(at, (int, float)) and 0 <= time.time() - at < TTL
    return value if fresh and isinstance(value, bool) else None


def remember(base_url: str, key: str, value: bool) -> None:
    """Atomic replace (workers on one machine write at once: the last one wins, never a torn file)."""
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load()
        data.setdefault(base_url, {})[key] = [value, time.time()]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registry-hosts.")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except OSError:
        pass
