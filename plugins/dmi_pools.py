"""DMI's scheduler plugin for an Airflow plugins folder: it creates the per-source `dmi_*` pools when a run
starts. A deployment needs it even without the Image mirror pages (plugins/dmi_image_mirror.py).

The provider also registers this plugin through the `airflow.plugins` entry point, so it loads wherever
the provider is installed; this file is for deployments that only mount plugins/.
"""

from __future__ import annotations

from dmi_provider.plugins.scheduler import DmiPoolsPlugin

__all__ = ["DmiPoolsPlugin"]
