"""DMI (Docker Mirror Images): an Apache Airflow provider that mirrors container images."""

from __future__ import annotations

__version__ = "0.1.0"


DOCS = "https://pypi.org/project/airflow-provider-dmi/"
# The cloud registries DMI reads connections of. Their connection types belong to the amazon, google and
# microsoft-azure providers (forms, hooks): declaring them under connection-types would register a second
# owner of each, so they are listed here, with the types DMI reads, as the schema's free-form tags.
CLOUDS = [
    {"integration-name": "Amazon ECR (DMI)", "external-doc-url": DOCS, "tags": ["aws", "connection-type:aws"]},
    {"integration-name": "Google Artifact Registry (DMI)", "external-doc-url": DOCS,
     "tags": ["gcp", "connection-type:google_cloud_platform"]},
    {"integration-name": "Azure Container Registry (DMI)", "external-doc-url": DOCS,
     "tags": ["azure", "connection-type:azure", "connection-type:azure_container_registry"]},
    {"integration-name": "Docker registry (DMI)", "external-doc-url": DOCS,
     "tags": ["software", "connection-type:docker"]},
]


def get_provider_info() -> dict:
    """Provider metadata, read by Airflow through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "airflow-provider-dmi",
        "name": "DMI (Docker Mirror Images)",
        "description": "Mirrors container images from public registries (Docker Hub) into private ones "
        "(AWS ECR, Google Artifact Registry, Azure Container Registry, any OCI registry) on a schedule, and "
        "keeps a history of every copy.",
        "versions": [__version__],
        "integrations": [{"integration-name": "DMI", "external-doc-url": DOCS, "tags": ["software"]}, *CLOUDS],
        "operators": [{"integration-name": "DMI", "python-modules": ["dmi_provider.operators.mirror"]}],
        # DMI's own registry connection; the amazon provider's AWS connection, the docker provider's Docker
        # connection, the google and azure ones (CLOUDS) and generic ones (login, password) work too.
        "hooks": [{"integration-name": "DMI", "python-modules": ["dmi_provider.hooks.registry"]}],
        # Both plugins also register through the `airflow.plugins` entry point: Airflow loads these only when
        # providers load eagerly. The pools plugin is what the scheduler needs; the other one is the pages.
        "plugins": [{"name": "dmi_pools", "plugin-class": "dmi_provider.plugins.scheduler.DmiPoolsPlugin"},
                    {"name": "dmi_image_mirror", "plugin-class": "dmi_provider.plugins.history.DmiHistoryPlugin"}],
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
