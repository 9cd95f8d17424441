"""Fixtures of the fault-injection suite: the e2e harness, and the per-scenario JSON summary
lines, printed at the end of the run (also with ``-q``) and appended to the file named by
``BWC_FAULTS_SUMMARY`` if set."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Harness
from tests.faults.harness import Summary

_LINES: list[str] = []


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "e2e")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def summary() -> Iterator[Callable[[str], Summary]]:
    made: list[Summary] = []

    def make(scenario: str) -> Summary:
        s = Summary(scenario)
        made.append(s)
        return s

    yield make
    for s in made:
        line = s.line()
        _LINES.append(line)
        print(line)
        if target := os.environ.get("BWC_FAULTS_SUMMARY"):
            with open(target, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fault-injection summary (tests/faults)")
        for line in _LINES:
            terminalreporter.write_line(line)
