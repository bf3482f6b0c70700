"""The mirror operators, usable in any DAG."""

from __future__ import annotations

from dmi_provider.operators.mirror import (
    EnsureRepositoryOperator,
    PullImageOperator,
    PushImageOperator,
    RecordMirrorOperator,
    ResolveTagsOperator,
    TagImageOperator,
)
from dmi_provider.operators.plan import PlanMirrorsOperator

__all__ = ["EnsureRepositoryOperator", "PlanMirrorsOperator", "PullImageOperator", "PushImageOperator",
           "RecordMirrorOperator", "ResolveTagsOperator", "TagImageOperator"]
