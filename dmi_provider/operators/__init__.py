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

__all__ = ["EnsureRepositoryOperator", "PullImageOperator", "PushImageOperator", "RecordMirrorOperator",
           "ResolveTagsOperator", "TagImageOperator"]
