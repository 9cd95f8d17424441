"""bwc-console keygen and cmd against the real agent: a signed hold is carried out, a purge of
a recording still under retention is refused (exit 1), an unknown dock gets no answer (exit 2),
and the dock's audit log names the console key that signed each command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.console.console_proc import run_console
from tests.e2e.harness import Harness, make_media
from tests.helpers import Mosquitto

K = 1024


def test_signed_commands_round_trip(e2e: Harness, mosquitto: Mosquitto, tmp_path: Path) -> None:
    keygen = run_console("keygen", "--out", tmp_path / "console.key")
    assert keygen.returncode == 0, keygen.stderr
    key_id = re.search(r"key_id:\s+([0-9a-f]{16})", keygen.stdout)[1]  # type: ignore[index]
    assert (tmp_path / "console.key").stat().st_mode & 0o777 == 0o600
    again = run_console("keygen", "--out", tmp_path / "console.key")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr

    cam = e2e.camera("delta", media=make_media([24 * K]))
    agent = e2e.make_agent(mosquitto, settings={
        "erase_after": "stored", "console_public_keys": [str(tmp_path / "console.key.pub")]})
    agent.enroll(cam)
    agent.start()
    (rid,) = cam.recordings
    e2e.wait(lambda: rid in agent.stored_ids(), "the recording stored")

    def cmd(name: str, *args: str, dock: str = agent.dock_id, timeout: str = "60"
            ) -> tuple[int, dict[str, object] | None]:
        done = run_console("cmd", dock, name, *(x for a in args for x in ("--arg", a)),
                           "--key", tmp_path / "console.key", "--broker", mosquitto.url,
                           "--timeout", timeout)
        out = json.loads(done.stdout) if done.stdout.strip() else None
        return done.returncode, out

    # Still under retention: refused by the dock, exit status 1.
    rc, result = cmd("purge", f"recording_ids={rid}", "admin_id=adm-1", "reason=tidy up")
    assert rc == 1 and result is not None, result
    assert (result["ok"], result["error"], result["command"]) == (False, "not_expired", "purge")
    rc, result = cmd("hold", f"recording_ids={rid}", "reason=dispute", "text=complaint 2026-7")
    assert rc == 0 and result is not None, result
    assert (result["ok"], result["error"], result["dock_id"]) == (True, None, agent.dock_id)
    held = result["request_id"]

    shown = [json.loads(x) for x in agent.cli("audit", "show").stdout.splitlines()]
    commands = [(a["command"], a["outcome"], a["signed"]) for a in shown
                if a["action"] == "command"]
    assert commands == [("purge", "not_expired", True), ("hold", "ok", True)]
    (hold,) = [a for a in shown if a["action"] == "hold"]
    assert (hold["actor"], hold["request_id"]) == (f"console:{key_id}", held), hold

    rc, result = cmd("hold", f"recording_ids={rid}", "reason=dispute", "text=x",
                     dock="no-such-dock", timeout="5")
    assert (rc, result) == (2, None)
