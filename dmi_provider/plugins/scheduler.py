"""DMI's scheduler side: the listener that creates the per-source `dmi_*` pools when a run starts. A plugin
of its own, because every deployment needs it (without it, pull tasks wait for a pool that never comes),
whether or not it shows the Image mirror pages (DmiHistoryPlugin)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dmi_provider import listeners


class DmiPoolsPlugin(AirflowPlugin):
    name = "dmi_pools"
    listeners = [listeners]
