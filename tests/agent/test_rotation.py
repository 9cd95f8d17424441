"""``dock-agent keys rotate`` (agent.rotation): every recording key rewrapped under a new
wrapping key, footage untouched, crash-safe, the old key destroyed, audited, and refused while
the agent runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import main
from agent.registry import Registry
from agent.rotation import RotationError, agent_stopped
from agent.store.footage import FootageStore, RecordingInfo
from agent.store.journal import Journal
from agent.store.keys import NEXT_WRAP_KEY_FILE, WRAP_KEY_FILE, KeyStore, wrapped_key_id
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage
from tests.helpers.recordings import store_recording

REPO = Path(__file__).resolve().parents[2]
UID = bytes(range(16))
CAM = Ed25519PrivateKey.generate()
STORED = 4


@dataclass
class Dock:
    config: Path
    state: Path
    originals: dict[str, bytes]  # stored recording id → its bytes
    partial: tuple[bytes, list[bytes]]  # (recording id, the chunks appended)
    data_keys: dict[str, bytes]  # key holder directory name → its data key (before)
    chunk_hashes: dict[str, str]  # key holder directory name → SHA-256 of chunks.dat

    @property
    def footage(self) -> Path:
        return self.state / "footage"


def _chunk(rid: bytes, index: int, data: bytes) -> tuple[bytes, bytes]:
    msg = ChunkMessage(UID, rid, index, index * 4096, len(data), hashlib.sha256(data).digest(),
                       ZERO_DIGEST).pack()
    return msg, CAM.sign(msg)


def _holders(state: Path) -> dict[str, Path]:
    store = FootageStore(state / "footage", KeyStore(state, create=False))
    return {d.name: d for d in store.key_holders()}


def _data_keys(state: Path) -> dict[str, bytes]:
    keys = KeyStore(state, create=False)
    out = {}
    for name, directory in _holders(state).items():
        info = RecordingInfo.load(directory)
        out[name] = keys.unwrap(info.wrapped_key, info.recording_id)
    return out


def _chunk_hashes(state: Path) -> dict[str, str]:
    return {name: hashlib.sha256((d / "chunks.dat").read_bytes()).hexdigest()
            for name, d in _holders(state).items()}


def _key_ids(state: Path) -> dict[str, str]:
    return {name: wrapped_key_id(RecordingInfo.load(d).wrapped_key).hex()
            for name, d in _holders(state).items()}


def _file_key_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).digest()[:8].hex()


@pytest.fixture
def dock(tmp_path: Path) -> Dock:
    """A stopped dock with stored, partial, quarantined and being-purged recordings."""
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(f'dock_id = "dock-01"\nunit = "zhanhe"\nstate_dir = "{state}"\n')
    keys = KeyStore(state)
    registry = Registry(state / "state.json")
    registry.enroll(UID, CAM.public_key(), officer_id="PD-1", by="cli")
    registry.close()
    store = FootageStore(state / "footage", keys)
    originals = {}
    for i in range(STORED + 1):
        fx = store_recording(store, camera_key=CAM, dock_key=keys.signing_key, camera_uid=UID,
                             started_ms=1_767_225_600_000 + i, ended_ms=1_767_229_200_000 + i,
                             data=os.urandom(9000 + i))
        originals[fx.recording_id.hex()] = fx.data
    purging = sorted(originals)[0]
    store.begin_purge(bytes.fromhex(purging))  # a purge that may still be aborted
    # A partial offload, and a quarantined one.
    partial_rid, chunks = os.urandom(16), [os.urandom(4096), os.urandom(4096)]
    with store.open_partial(partial_rid, UID, 5, {"n": 1}) as partial:
        for index, data in enumerate(chunks):
            partial.append_chunk(index, data, *_chunk(partial_rid, index, data))
    bad = os.urandom(16)
    with store.open_partial(bad, UID, 3, {}) as partial:
        partial.append_chunk(0, b"q" * 100, *_chunk(bad, 0, b"q" * 100))
    store.quarantine(bad, "chunk_hash")
    return Dock(config, state, originals, (partial_rid, chunks), _data_keys(state),
                _chunk_hashes(state))


def _run(dock: Dock, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(dock.config)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def _assert_rotated_and_intact(dock: Dock, tmp_path: Path, old_key: bytes) -> None:
    state = dock.state
    assert not (state / NEXT_WRAP_KEY_FILE).exists()
    new_id = _file_key_id(state / WRAP_KEY_FILE)
    assert set(_key_ids(state).values()) == {new_id}
    # The same data keys, only wrapped anew; the footage files not rewritten.
    assert _data_keys(state) == dock.data_keys
    assert _chunk_hashes(state) == dock.chunk_hashes
    # The old key is nowhere in the state directory.
    for path in state.rglob("*"):
        if path.is_file():
            assert old_key not in path.read_bytes(), path
    # Every stored recording verifies and exports its original bytes.
    store = FootageStore(dock.footage, KeyStore(state, create=False))
    store.abort_purge(bytes.fromhex(sorted(dock.originals)[0]))
    verify = _run(dock, "verify", "--all")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert sorted(verify.stdout.splitlines()) == sorted(f"{rid} OK" for rid in dock.originals)
    for rid, data in dock.originals.items():
        out = tmp_path / f"{rid}-{len(list(tmp_path.iterdir()))}.bin"
        assert main(["export", rid, "--out", str(out), "--config", str(dock.config)]) == 0
        assert out.read_bytes() == data
    # The partial resumes under the new key.
    rid, chunks = dock.partial
    with store.open_partial(rid, UID, 5, {}) as partial:
        assert partial.next_index == len(chunks)
        assert list(partial.read_chunks()) == chunks


def _audit(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for seg in sorted((state / "journal" / "audit").glob("*.jsonl"))
            for line in seg.read_text().splitlines()]


def test_rotate_rewraps_every_recording_key_and_destroys_the_old_key(
        dock: Dock, tmp_path: Path) -> None:
    old_key = (dock.state / WRAP_KEY_FILE).read_bytes()
    old_id = _file_key_id(dock.state / WRAP_KEY_FILE)
    done = _run(dock, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    new_id = _file_key_id(dock.state / WRAP_KEY_FILE)
    holders = STORED + 1 + 2  # stored (one of them being purged), partial, quarantined
    assert f"rewrapped {holders} of {holders} recording keys under {new_id}" in done.stdout
    assert f"old wrapping key {old_id} destroyed" in done.stdout
    _assert_rotated_and_intact(dock, tmp_path, old_key)
    entries = [e for e in _audit(dock.state) if e["action"] == "keys_rotate"]
    assert [(e["phase"], e["old_key_id"], e["new_key_id"]) for e in entries] == [
        ("started", old_id, new_id), ("completed", old_id, new_id)]
    assert entries[1]["rewrapped"] == entries[1]["recordings"] == holders
    shown = _run(dock, "keys", "show")
    assert shown.returncode == 0 and shown.stdout.strip() == f"wrap_key_id={new_id}"
    # A second rotation is a new one.
    again = _run(dock, "keys", "rotate")
    assert again.returncode == 0, again.stderr
    assert _file_key_id(dock.state / WRAP_KEY_FILE) not in (old_id, new_id)
    assert _data_keys(dock.state) == dock.data_keys


_CRASHING = """
import os, signal, sys
from pathlib import Path
from agent.rotation import rotate_wrap_key
phase, at = sys.argv[2], int(sys.argv[3])
def hook(p, n):
    print(p, n, flush=True)
    if (p, n) == (phase, at):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after that step was durable
rotate_wrap_key(Path(sys.argv[1]), actor="cli:test", hook=hook)
"""


@pytest.mark.parametrize("phase, at", [
    ("started", 0), ("rewrapped", 1), ("rewrapped", 4), ("completed", STORED + 3)])
def test_killed_mid_rotation_every_recording_stays_readable_and_a_rerun_completes(
        dock: Dock, tmp_path: Path, phase: str, at: int) -> None:
    old_key = (dock.state / WRAP_KEY_FILE).read_bytes()
    old_id = _file_key_id(dock.state / WRAP_KEY_FILE)
    proc = subprocess.run([sys.executable, "-c", _CRASHING, str(dock.state), phase, str(at)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{phase} {at}"
    # Both keys on disk; each recording under one of them, exactly `at` under the new one.
    new_id = _file_key_id(dock.state / NEXT_WRAP_KEY_FILE)
    assert _file_key_id(dock.state / WRAP_KEY_FILE) == old_id
    ids = list(_key_ids(dock.state).values())
    assert set(ids) <= {old_id, new_id} and ids.count(new_id) == at
    assert _data_keys(dock.state) == dock.data_keys  # all readable, by a fresh process
    shown = _run(dock, "keys", "show")
    assert "rotation=interrupted" in shown.stdout
    assert "a key rotation was interrupted" in shown.stderr  # as the agent would log it
    # The agent started now would serve them all; a re-run finishes with the same new key.
    done = _run(dock, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    assert "resumed an interrupted rotation" in done.stdout
    assert done.stderr == "back up the new wrap.key now (docs/operations.md §6)\n"
    assert f"rewrapped {STORED + 3 - at} of {STORED + 3}" in done.stdout
    assert _file_key_id(dock.state / WRAP_KEY_FILE) == new_id
    _assert_rotated_and_intact(dock, tmp_path, old_key)
    phases = [e["phase"] for e in _audit(dock.state) if e["action"] == "keys_rotate"]
    assert phases == ["started", *(["completed"] if phase == "completed" else []),
                      "resumed", "completed"]


def test_refused_while_the_agent_holds_the_state_and_the_agent_refused_during_rotation(
        dock: Dock) -> None:
    # The running agent owns the session journal for its lifetime (agent.daemon).
    journal = Journal(dock.state / "journal" / "sessions")
    try:
        done = _run(dock, "keys", "rotate")
    finally:
        journal.close()
    assert done.returncode == 1
    assert done.stderr == ("dock-agent keys: error: the agent is running, or another rotation "
                           "is: stop it first (sudo systemctl stop bwc-dock-agent)\n")
    assert not (dock.state / NEXT_WRAP_KEY_FILE).exists()
    # And the other way round: an agent started while a rotation runs does not start.
    with agent_stopped(dock.state):
        run = _run(dock, "run")
        with pytest.raises(RotationError, match="agent is running"), agent_stopped(dock.state):
            pass
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (f"dock-agent run: error: journal {dock.state}/journal/"
                                           "sessions is open elsewhere"), run.stderr


def test_a_recording_that_cannot_be_rewrapped_keeps_the_old_key(dock: Dock) -> None:
    old_id = _file_key_id(dock.state / WRAP_KEY_FILE)
    (damaged,) = (d for d in _holders(dock.state).values() if d.parent.name == "quarantine")
    meta = damaged / "meta.json"
    meta.write_bytes(meta.read_bytes().replace(b'"chunk_count":3', b'"chunk_count":"x"'))
    done = _run(dock, "keys", "rotate")
    assert done.returncode == 1
    *logged, error = done.stderr.splitlines()
    assert error.startswith("dock-agent keys: error: 1 recording(s) could not be rewrapped, the "
                            f"old key is kept (first: {damaged.name}: malformed recording ")
    assert len(logged) == 1 and f"recording {damaged.name}: not rewrapped" in logged[0]
    assert _file_key_id(dock.state / WRAP_KEY_FILE) == old_id
    assert (dock.state / NEXT_WRAP_KEY_FILE).exists()
    entries = [e for e in _audit(dock.state) if e["action"] == "keys_rotate"]
    assert [e["phase"] for e in entries] == ["started", "incomplete"]
    assert entries[1]["failed"] == [damaged.name]
