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
        "integrations": [{"integration-name": "DMI", "external-doc-url": "https://pypi.org/project/airflow-provider-dmi/",
                          "tags": ["software"]}],
        "operators": [{"integration-name": "DMI", "python-modules": ["dmi_provider.operators.mirror"]}],
        # Credentials come from the amazon provider's AWS connection, the docker provider's Docker connection
        # and generic connections (login, password): DMI adds no hook class or connection type of its own.
        "hooks": [],
        "connection-types": [],
    }
