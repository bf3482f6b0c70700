"""engine = registry (the default): registry to registry without a Docker daemon, digest-exact."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from dmi_provider.engines.base import EngineSetup, open_copier
from dmi_provider.registry.copy import Copier, CopyResult, Plan
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.gate import RejectedImage
from dmi_provider.registry.reference import Reference


class RegistryEngine:
    name = "registry"

    def __init__(self, setup: EngineSetup):
        self.setup = setup

    @cached_property
    def copier(self) -> Copier:
        return open_copier(self.setup)

    def plan(self, pairs: Sequence[tuple[Reference, Reference]], *, force: bool, dry_run: bool) -> list[Plan]:
        platforms = self.setup.spec.selection.platforms
        return [self.copier.plan(src, dst, platforms=platforms, force=force, fetch=not dry_run) for src, dst in pairs]

    def stage(self, plans: Sequence[Plan]) -> None:
        pass  # blobs stream straight from the source into the target

    def tag(self, plans: Sequence[Plan]) -> None:
        pass  # the target tag is the last manifest written by transfer

    def transfer(self, plans: Sequence[Plan]) -> list[CopyResult]:
        return [self._transfer(plan) if plan.changed else plan.result() for plan in plans]

    def _transfer(self, plan: Plan) -> CopyResult:
        try:
            return self.copier.execute(plan)
        except RejectedImage:
            raise  # not published, whatever the tag holds
        except RegistryError:
            if self.copier.gate is not None and self.copier.gate.active:
                raise  # verify: "the tag already holds it" is no verdict; only what verified is published
            # An IMMUTABLE tag (ECR) refuses a re-push even of the digest it holds: that is success.
            held = None if plan.filtered else self.copier.target_digest(plan.target)
            if held is None or held != plan.source_digest:
                raise
            self.setup.hooks.say(f"{plan.target} already holds {plan.source_digest} (immutable tag)")
            result = plan.result()
            result.target_digest = held
            return result

    def close(self) -> None:
        if "copier" in self.__dict__:
            self.copier.close()
