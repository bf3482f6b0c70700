"""Where images go: one Target protocol (targets/base.py), one module per kind of target.

Adding a target is one module plus one line in TARGETS. Modules are imported only when a section
uses them, so a `target = registry` worker never imports a cloud SDK.
"""

from __future__ import annotations

from importlib import import_module

from dmi_provider.spec import MirrorSpec
from dmi_provider.targets.base import Endpoint, RepositoryOutcome, Target

TARGETS = {
    "ecr": "dmi_provider.targets.ecr:EcrTarget",
    "gar": "dmi_provider.targets.gar:GarTarget",
    "acr": "dmi_provider.targets.acr:AcrTarget",
    "registry": "dmi_provider.targets.registry:RegistryTarget",
}


def _backend(kind: str, spec: MirrorSpec) -> type:
    try:
        module, _, name = TARGETS[kind].partition(":")
    except KeyError:
        raise ValueError(f"section {spec.section!r}: unknown target {kind!r}; known: {', '.join(TARGETS)}") from None
    return getattr(import_module(module), name)


def make_target(spec: MirrorSpec) -> Target:
    return _backend(spec.target.kind, spec)(spec)


def make_source(spec: MirrorSpec) -> Target:
    """A cloud's registry as the source (`source = ecr|gar|acr`): only its endpoint() (login) is used."""
    return _backend(spec.source.kind, spec)(spec, source=True)


__all__ = ["TARGETS", "Endpoint", "RepositoryOutcome", "Target", "make_source", "make_target"]
