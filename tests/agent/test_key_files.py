"""The agent refuses to start, with one clear line, when its keys are not the service user's
alone: key file group/other-accessible or owned by another user, key directory not 0700."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.store.keys import SIGNING_KEY_FILE, WRAP_KEY_FILE, KeyStore

REPO = Path(__file__).resolve().parents[2]
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def _chmod(name: str, mode: int) -> Callable[[Path], None]:
    return lambda state: os.chmod(state / name, mode)


def _chown(name: str) -> Callable[[Path], None]:
    return lambda state: os.chown(state / name, 1, 1)


@pytest.mark.parametrize("spoil, message", [
    (_chmod(WRAP_KEY_FILE, 0o640),
     "key file mode 0640 gives group/other access; expected 0600 [{state}/wrap.key]"),
    (_chmod(SIGNING_KEY_FILE, 0o604),
     "key file mode 0604 gives group/other access; expected 0600 [{state}/dock_key.pem]"),
    (_chmod(".", 0o750),
     "key directory mode 0750 gives group/other access; expected 0700 [{state}]"),
    pytest.param(_chown(WRAP_KEY_FILE),
                 "key file is owned by uid 1, not by uid 0 running the agent: run as the "
                 "service user [{state}/wrap.key]", marks=ROOT_ONLY),
    pytest.param(_chown("."),
                 "key directory is owned by uid 1, not by uid 0 running the agent: run as the "
                 "service user [{state}]", marks=ROOT_ONLY),
])
def test_agent_refuses_to_start_with_keys_others_can_reach(
        tmp_path: Path, spoil: Callable[[Path], None], message: str) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(f'dock_id = "dock-01"\nunit = "zhanhe"\nstate_dir = "{state}"\n'
                      'broker = ""\nserial_ports = []\nusb_ids = []\n')
    keys = KeyStore(state)
    keys.wrap(b"x", b"")
    keys.signing_key.sign(b"x")
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    spoil(state)
    done = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == f"dock-agent run: error: {message.format(state=state)}\n"
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before  # nothing replaced
