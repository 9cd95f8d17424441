"""Scenario 2: simulated power loss. After each ``kill -9`` every write the kernel was not
asked to make durable is dropped — file data not fsynced, directory entries whose directory was
not fsynced — and the agent restarts on what is left (the shim's shadow, see
``shim/bwc_fault_shim.py``); half of the append-only files whose tail was dropped get a random
prefix of it back (a torn tail). Kill points as in scenario 1.

Invariant: as scenario 1, with "durably stored" meaning what survived the power loss — no camera
ever released a recording the dock lost, and nothing acknowledged as stored is missing or fails
verification afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.harness import Harness
from tests.faults.campaign import run_campaign
from tests.faults.harness import Summary
from tests.helpers import Mosquitto


def test_power_loss_at_30_points_loses_nothing_acknowledged(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    run_campaign(e2e, mosquitto, summary, 30, power_loss=True, name="power-loss")


@pytest.mark.soak
def test_power_loss_at_120_points_loses_nothing_acknowledged(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    run_campaign(e2e, mosquitto, summary, 120, power_loss=True, name="power-loss-soak")
