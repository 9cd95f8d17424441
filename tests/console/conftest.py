"""Fixtures for the console's end-to-end tests: the shared e2e harness, and bwc-console
processes (ingest runs as the real CLI in a subprocess, stopped at teardown)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.console.console_proc import IngestProcess
from tests.e2e.harness import Harness


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "e2e")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Callable[..., IngestProcess]]:
    started: list[IngestProcess] = []

    def start(broker: str, trust: dict[str, dict[str, str]], *, name: str = "console",
              ) -> IngestProcess:
        proc = IngestProcess(tmp_path / name, broker, trust, run=sum(
            1 for p in started if p.root == tmp_path / name))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
