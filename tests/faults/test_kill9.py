"""Scenario 1: ``kill -9`` the agent at many points — during offload, store finalisation, TinyDB
writes and outbox publishing — restarting it each time.

Invariant, checked after every kill (agent dead, state frozen) and at the end: every recording a
camera released is durably stored and was acknowledged by the console; at the end every
recording is stored once and verifies, its manifest matches the original bytes, and every
manifest and event reached the console exactly once after de-duplication by id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.harness import Harness
from tests.faults.campaign import run_campaign
from tests.faults.harness import Summary
from tests.helpers import Mosquitto


def test_kill9_at_50_points_loses_and_duplicates_nothing(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    run_campaign(e2e, mosquitto, summary, 50, power_loss=False, name="kill9")


@pytest.mark.soak
def test_kill9_at_200_points_loses_and_duplicates_nothing(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    run_campaign(e2e, mosquitto, summary, 200, power_loss=False, name="kill9-soak")
