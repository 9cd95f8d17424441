"""The e2e fixture: one :class:`~tests.e2e.harness.Harness` per test, torn down whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Harness


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "e2e")
    try:
        yield harness
    finally:
        harness.close()
