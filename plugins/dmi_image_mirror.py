"""The DMI "Image mirror" pages for an Airflow plugins folder (optional: the scheduler's pools come from
plugins/dmi_pools.py, which every deployment needs).

The provider also registers this plugin through the `airflow.plugins` entry point, so it loads wherever
the provider is installed; this file is for deployments that only mount plugins/.
"""

from __future__ import annotations

from dmi_provider.plugins.history import DmiHistoryPlugin

__all__ = ["DmiHistoryPlugin"]
