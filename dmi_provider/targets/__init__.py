"""Where images go: one Target protocol (targets/base.py), one module per kind of target.

Adding a target is one module plus one line in TARGETS. Modules are imported only when a section
uses them, so a `target = registry` worker never imports a cloud SDK.
"""

from __future__ import annotations

from importlib import import_module

from dmi_provider.job import Job
from dmi_provider.targets.base import Endpoint, RepositoryOutcome, Target

TARGETS = {
    "ecr": "dmi_provider.targets.ecr:EcrTarget",
    "gar": "dmi_provider.targets.gar:GarTarget",
    "acr": "dmi_provider.targets.acr:AcrTarget",
    "registry": "dmi_provider.targets.registry:RegistryTarget",
}


def _backend(kind: str, job: Job) -> type:
    try:
        module, _, name = TARGETS[kind].partition(":")
    except KeyError:
        raise ValueError(f"section {job.section!r}: unknown target {kind!r}; known: {', '.join(TARGETS)}") from None
    return getattr(import_module(module), name)


def make_target(job: Job) -> Target:
    return _backend(job.target, job)(job)


def make_source(job: Job) -> Target:
    """A cloud's registry as the source (`source = ecr|gar|acr`): only its endpoint() (login) is used."""
    return _backend(job.source_type, job)(job, source=True)


__all__ = ["TARGETS", "Endpoint", "RepositoryOutcome", "Target", "make_source", "make_target"]
