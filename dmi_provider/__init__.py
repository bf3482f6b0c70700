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
        # DMI's own registry connection; the amazon provider's AWS connection, the docker provider's Docker
        # connection and generic ones (login, password) work too.
        "hooks": [{"integration-name": "DMI", "python-modules": ["dmi_provider.hooks.registry"]}],
        "connection-types": [{
            "hook-class-name": "dmi_provider.hooks.registry.ContainerRegistryHook",
            "hook-name": "Container Registry (DMI)",
            "connection-type": "container_registry",
            "conn-fields": {
                "proxy": {"label": "Proxy URL", "schema": {"type": ["string", "null"]},
                          "description": "http://[user:password@]host:port for this registry only (default: "
                          "HTTPS_PROXY, HTTP_PROXY and NO_PROXY of the worker)"},
                "ca_bundle": {"label": "CA bundle", "schema": {"type": ["string", "null"]},
                              "description": "PEM text, or the path of a PEM file on the workers, of the CA that "
                              "signed the registry's certificate; trusted besides the system's CAs"},
                "insecure": {"label": "Plain HTTP", "schema": {"type": ["boolean", "null"]},
                             "description": "talk to this registry over plain HTTP (no TLS at all)"},
                "test_repository": {"label": "Test repository", "schema": {"type": ["string", "null"]},
                                    "description": "repository the Test button asks a pull token for "
                                    "(default library/alpine)"},
            },
            "ui-field-behaviour": {
                "hidden-fields": ["schema"],
                "relabeling": {"host": "Registry (host[:port])", "login": "Username",
                               "password": "Password or token"},
                "placeholders": {"host": "registry.example.com", "login": "mirror-bot",
                                 "proxy": "http://proxy.example.com:3128"},
            },
        }],
    }
