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
    "registry": "dmi_provider.targets.registry:RegistryTarget",
}


def make_target(job: Job) -> Target:
    try:
        module, _, name = TARGETS[job.target].partition(":")
    except KeyError:
        raise ValueError(f"section {job.section!r}: unknown target {job.target!r}; known: "
                         f"{', '.join(TARGETS)}") from None
    return getattr(import_module(module), name)(job)


__all__ = ["TARGETS", "Endpoint", "RepositoryOutcome", "Target", "make_target"]
