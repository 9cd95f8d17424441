"""bwc-console watch --once: the retained fleet state in one snapshot, here a camera docked with
a low battery (not ready, battery_low) next to a dock that is online with its health."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.console.console_proc import run_console
from tests.e2e.harness import PY, REPO, Harness
from tests.helpers import Mosquitto


def test_watch_once_json_shows_a_low_battery_camera(e2e: Harness, mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    lowbat = e2e.camera("lowbat", args=["--battery", "20"])
    agent = e2e.make_agent(mosquitto)
    agent.enroll(lowbat)
    observer = e2e.console(mosquitto)
    agent.start()
    e2e.wait(lambda: observer.docked_status(lowbat), "the camera's readiness published")

    def snapshot() -> dict[str, Any] | None:
        done = run_console("watch", "--once", "--json", "--broker", mosquitto.url)
        assert done.returncode == 0, done.stderr
        snap: dict[str, Any] = json.loads(done.stdout)
        docks = [d for d in snap["docks"] if d["dock_id"] == agent.dock_id]
        return snap if docks and docks[0]["health"] is not None else None

    snap = e2e.wait(snapshot, "a snapshot with the dock's health")
    (dock,) = snap["docks"]
    assert (dock["unit"], dock["state"], dock["online"]) == (agent.unit, "online", True)
    assert dock["outbox_depth"] is not None and dock["public_key"]
    (camera,) = snap["cameras"]
    assert camera["camera_uid"] == lowbat.uid_hex and camera["dock_id"] == agent.dock_id
    assert (camera["docked"], camera["stale"], camera["battery_pct"]) == (True, False, 20)
    assert camera["ready"] is False and camera["reasons"] == ["battery_low"]
    assert camera["slot"] == lowbat.slot

    table = run_console("watch", "--once", "--broker", mosquitto.url, "--unit", agent.unit)
    assert table.returncode == 0, table.stderr
    assert lowbat.uid_hex in table.stdout and "battery_low" in table.stdout
    assert "20%" in table.stdout
    other = run_console("watch", "--once", "--json", "--broker", mosquitto.url, "--unit", "nope")
    assert json.loads(other.stdout)["cameras"] == []

    # The live view redraws as messages arrive and ends cleanly on Ctrl-C.
    screen = tmp_path / "watch.out"
    with screen.open("wb") as out:
        live = subprocess.Popen([PY, "-m", "bwc_console.cli", "watch", "--broker",
                                 mosquitto.url], stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                stdin=subprocess.DEVNULL)
    try:
        e2e.wait(lambda: screen.read_text().count("battery_low") >= 1, "the live table")
        lowbat.stop()  # undocked: the next redraw shows it away
        e2e.wait(lambda: "away" in screen.read_text().rsplit("bwc-console watch", 1)[-1],
                 "a redraw with the camera away")
    finally:
        live.send_signal(signal.SIGINT)
        assert live.wait(60) == 0  # a loaded CI machine: stopping paho takes a moment
