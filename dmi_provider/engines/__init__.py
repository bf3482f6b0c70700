"""How bytes move: one Engine protocol (engines/base.py), one module per engine.

Adding an engine is one module plus one line in ENGINES; a module is imported only when used.
"""

from __future__ import annotations

from importlib import import_module

from dmi_provider.engines.base import Engine, EngineSetup, RunHooks, Tuning
from dmi_provider.errors import DmiError

ENGINES = {
    "registry": "dmi_provider.engines.registry:RegistryEngine",
    "docker": "dmi_provider.engines.docker:DockerEngine",
}


def make_engine(name: str, setup: EngineSetup) -> Engine:
    try:
        module, _, cls = ENGINES[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None
    if name != "registry" and setup.gate is not None and setup.gate.active:
        # Only the registry engine writes the tag after verifying: another would publish unverified images.
        raise DmiError(f"verify needs engine = registry, not {name}", retryable=False)
    return getattr(import_module(module), cls)(setup)


__all__ = ["ENGINES", "Engine", "EngineSetup", "RunHooks", "Tuning", "make_engine"]
