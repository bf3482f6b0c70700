"""DMI (Docker Mirror Images): an Apache Airflow provider that mirrors container images."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata, read by Airflow through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "airflow-provider-dmi",
        "name": "DMI (Docker Mirror Images)",
        "description": "Mirrors container images from public registries (Docker Hub) into private ones "
        "(AWS ECR, any OCI registry) on a schedule, and keeps a history of every copy.",
        "versions": [__version__],
        # Filled in as hooks, operators and connection types land.
        "hooks": [],
        "operators": [],
        "connection-types": [],
    }
