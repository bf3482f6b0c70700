"""What every test may use: image factories, unique repository names, the rig's scratch folder. The fixtures
that start real services live in tests/rig/fixtures.py, for tests/integration and tests/system only: the unit
lane imports none of them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rig.images import ImageFactory

ROOT = Path(__file__).resolve().parents[1]
_repo_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def rig_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rig")


@pytest.fixture
def factory(request: pytest.FixtureRequest) -> ImageFactory:
    return ImageFactory(seed=hash(request.node.nodeid) & 0xFFFFFFF)


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique repository names per test, so session-wide registries need no cleaning."""

    def make(base: str = "img") -> str:
        return f"t{next(_repo_numbers)}/{base}"

    return make
