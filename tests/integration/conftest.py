"""The real services of tests/rig, started on loopback by the fixtures themselves."""

from __future__ import annotations

from tests.rig.fixtures import *  # noqa: F403
