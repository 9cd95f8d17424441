"""``dock-agent run`` with a bad configuration: refused before anything starts, with one line
that names the key at fault."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import PY, REPO

CASES = [
    ("unknown top-level key", 'erase_afterr = "never"\n', "erase_afterr"),
    ("unknown key in a table", "[clock]\nrequire_ntp = false\n", "clock.require_ntp"),
    ("value out of range", "[readiness]\nbattery_min_pct = 120\n", "readiness.battery_min_pct"),
    ("value not among the choices", 'erase_after = "sometimes"\n', "erase_after"),
    ("wrong type", 'serial_ports = "/dev/ttyACM0"\n', "serial_ports"),
    ("bad broker URL", 'broker = "http://127.0.0.1:1883"\n', "broker"),
]


@pytest.mark.parametrize(("body", "key"), [(body, key) for _, body, key in CASES],
                         ids=[name for name, _, _ in CASES])
def test_bad_config_is_refused_with_one_line_naming_the_key(tmp_path: Path, body: str,
                                                            key: str) -> None:
    state = tmp_path / "state"
    config = tmp_path / "bad.toml"
    config.write_text(f'dock_id = "dock-1"\nunit = "unit-1"\nstate_dir = "{state}"\n' + body)
    done = subprocess.run([PY, "-m", "agent.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"'{key}'" in lines[0], lines[0]
    assert done.stdout == ""
    assert not state.exists()  # refused before creating any state
