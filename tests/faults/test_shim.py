"""The fault shim itself: its power-loss model keeps exactly what was fsynced, its injected
errors and kills happen where configured. (The scenarios are only as good as this.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.harness import REPO
from tests.faults.harness import SHIM_DIR
from tests.faults.shim.bwc_fault_shim import materialize, read_activity


def _run_under_shim(tmp_path: Path, script: str, **cfg: Any) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    config = {"root": str(root), "events": str(tmp_path / "events.jsonl"),
              "activity": str(tmp_path / "activity"), **cfg}
    (tmp_path / "shim.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), str(REPO)]),
           "BWC_FAULT_SHIM": str(tmp_path / "shim.json")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(root)], env=env,
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)


_POWER_LOSS_SCRIPT = """
    import os, sys
    root = sys.argv[1]
    def fsync_dir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    def put(name, data, *, sync_file, sync_dir, flags=0):
        path = os.path.join(root, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
        os.write(fd, data)
        if sync_file:
            os.fsync(fd)
        os.close(fd)
        if sync_dir:
            fsync_dir(os.path.dirname(path))
    # u/ is never fsynced: no entry made in it survives, whatever happened to the data
    put("u/a", b"never synced", sync_file=False, sync_dir=False)
    put("u/b", b"file synced, entry not", sync_file=True, sync_dir=False)
    put("u/.f.tmp", b"new f", sync_file=True, sync_dir=False)
    os.replace(os.path.join(root, "u/.f.tmp"), os.path.join(root, "u/f"))
    # the root is fsynced (again and again): its entries survive, data only where fsynced
    put("c", b"both synced", sync_file=True, sync_dir=True)
    put("d", b" appended, not synced", sync_file=False, sync_dir=False, flags=os.O_APPEND)
    put("e", b"+synced", sync_file=True, sync_dir=False, flags=os.O_APPEND)
    put("e", b"+not synced", sync_file=False, sync_dir=False, flags=os.O_APPEND)
    put("n", b"name synced, data not", sync_file=False, sync_dir=True)
    put(".g.tmp", b"new g", sync_file=True, sync_dir=False)
    os.replace(os.path.join(root, ".g.tmp"), os.path.join(root, "g"))
    fsync_dir(root)
    put("g", b"!", sync_file=False, sync_dir=False, flags=os.O_APPEND)
    # a rename between directories is atomic: durable once either side is fsynced
    os.mkdir(os.path.join(root, "sub"))
    put("sub/x", b"x", sync_file=True, sync_dir=True)
    fsync_dir(root)
    os.rename(os.path.join(root, "sub", "x"), os.path.join(root, "x"))
    fsync_dir(root)
    # an inode number reused after an unlink must not inherit the old durable content
    os.unlink(os.path.join(root, "c2"))
    put("c3", b"fresh", sync_file=False, sync_dir=True)
    os.kill(os.getpid(), 9)
"""


def test_power_loss_model_keeps_exactly_what_was_fsynced(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "u").mkdir(parents=True)
    (root / "u" / "f").write_bytes(b"old f")
    (root / "d").write_bytes(b"durable at start")
    (root / "e").write_bytes(b"durable at start")
    (root / "c2").write_bytes(b"old c2")
    done = _run_under_shim(tmp_path, _POWER_LOSS_SCRIPT, shadow=str(tmp_path / "shadow"))
    assert done.returncode == -signal.SIGKILL, done.stderr
    after = tmp_path / "after"
    materialize(str(tmp_path / "shadow"), str(after))
    found = {p.relative_to(after).as_posix(): p.read_bytes()
             for p in after.rglob("*") if p.is_file()}
    assert found == {
        "u/f": b"old f",
        "c": b"both synced",
        "d": b"durable at start",
        "e": b"durable at start+synced",
        "n": b"",
        "g": b"new g",
        "x": b"x",
        "c3": b"",
    }, found
    assert sorted(p.name for p in after.iterdir() if p.is_dir()) == ["sub", "u"]
    # The live tree had everything (the page cache survives a kill -9, not a power loss).
    assert (root / "u" / "a").read_bytes() == b"never synced"
    assert (root / "g").read_bytes() == b"new g!"


def test_injected_error_hits_the_nth_call_only(tmp_path: Path) -> None:
    script = """
        import os, sys
        root = sys.argv[1]
        fd = os.open(os.path.join(root, "f"), os.O_WRONLY | os.O_CREAT, 0o600)
        results = []
        for i in range(4):
            try:
                os.write(fd, b"%d" % i)
                results.append("ok")
            except OSError as exc:
                results.append(exc.errno)
        os.write(1, repr(results).encode())
    """
    done = _run_under_shim(tmp_path, script, fault={"cat": "write", "nth": 3, "errno": "EIO"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['ok', 'ok', 5, 'ok']"
    assert (tmp_path / "root" / "f").read_bytes() == b"013"
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["what"], e["category"], e["errno"]) for e in events] == [("fault", "write", "EIO")]


def test_sticky_error_fails_every_later_mutation(tmp_path: Path) -> None:
    script = """
        import os, sys
        root = sys.argv[1]
        out = []
        for call in (lambda: os.mkdir(os.path.join(root, "d1")),
                     lambda: os.mkdir(os.path.join(root, "d2")),
                     lambda: os.open(os.path.join(root, "f"), os.O_WRONLY | os.O_CREAT),
                     lambda: os.listdir(root)):
            try:
                call()
                out.append("ok")
            except OSError as exc:
                out.append(exc.errno)
        os.write(1, repr(out).encode())
    """
    done = _run_under_shim(tmp_path, script,
                           fault={"cat": "mkdir", "nth": 2, "errno": "EROFS", "sticky": True})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['ok', 30, 30, 'ok']"


def test_kill_fires_at_the_chosen_call_and_activity_shows_it(tmp_path: Path) -> None:
    script = """
        import os, sys
        root = sys.argv[1]
        for name in ("a", "b", "c"):
            fd = os.open(os.path.join(root, name), os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"x")
            os.fsync(fd)
            os.close(fd)
    """
    done = _run_under_shim(tmp_path, script,
                           kill={"cat": "fsync", "path": "^b$", "nth": 1, "when": "before"})
    assert done.returncode == -signal.SIGKILL
    assert not (tmp_path / "root" / "c").exists()
    counts, calls = read_activity(str(tmp_path / "activity"))
    assert counts["fsync"] == 2 and counts["write"] == 2
    assert (calls[-1]["category"], calls[-1]["path"], calls[-1]["returned"]) == ("fsync", "b",
                                                                                 False)


def test_a_failed_fsync_is_cut_off_and_the_journal_carries_on(tmp_path: Path) -> None:
    """An fsync failure is fatal for that append only: it is cut off (so no rescan can find
    it in the page cache after a reopen) and the journal reopens its tail for the next one —
    also across a power loss, where the failed append's pages never reach the disk."""
    script = """
        import json, os, sys
        from agent.store.journal import Journal
        root = sys.argv[1]
        j = Journal(os.path.join(root, "j"))
        j.append({"n": "a"})
        try:
            j.append({"n": "b"})
            out = "b appended"
        except OSError as exc:
            out = exc.errno
        j.append({"n": "c"})
        os.write(1, json.dumps([out, [r["n"] for r in j.read()]]).encode())
        os.kill(os.getpid(), 9)
    """
    (tmp_path / "root").mkdir()
    # the third fsync of a segment: its creation, "a", then "b"
    done = _run_under_shim(tmp_path, script, shadow=str(tmp_path / "shadow"),
                           fault={"cat": "fsync", "nth": 3, "errno": "EIO", "path": r"\.jsonl$"})
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert json.loads(done.stdout) == [5, ["a", "c"]], done.stderr
    assert "reopening the tail after a failed fsync" in done.stderr
    after = tmp_path / "after"
    materialize(str(tmp_path / "shadow"), str(after))
    from agent.store.journal import Journal
    with Journal(after / "j") as journal:
        assert [r["n"] for r in journal.read()] == ["a", "c"]


def test_a_kill_inside_the_shadows_own_bookkeeping_keeps_a_rename_atomic(tmp_path: Path) -> None:
    """The power cut is a kill -9 at any moment, also between the shadow's two listing writes
    of one cross-directory rename (seen once in 120 power cuts): the rename must come out whole,
    never in both directories (the agent then found a recording both partial and stored)."""
    script = """
        import os, sys
        import bwc_fault_shim as shim
        root = sys.argv[1]
        def fsync_dir(path):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
        for d in ("partial", "recordings"):
            os.mkdir(os.path.join(root, d))
        os.mkdir(os.path.join(root, "partial", "rec"))
        fsync_dir(os.path.join(root, "partial"))
        fsync_dir(root)
        shadow = shim._shim.shadow
        real_save = shadow._save_listing
        def save_then_die(dir_id, listing):
            real_save(dir_id, listing)
            os.kill(os.getpid(), 9)  # after the first of the two listings
        shadow._save_listing = save_then_die
        os.rename(os.path.join(root, "partial", "rec"), os.path.join(root, "recordings", "rec"))
        fsync_dir(os.path.join(root, "recordings"))
    """
    done = _run_under_shim(tmp_path, script, shadow=str(tmp_path / "shadow"))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (tmp_path / "shadow" / "pending.json").exists()
    after = tmp_path / "after"
    materialize(str(tmp_path / "shadow"), str(after))
    assert sorted(p.name for p in (after / "recordings").iterdir()) == ["rec"]
    assert list((after / "partial").iterdir()) == []
