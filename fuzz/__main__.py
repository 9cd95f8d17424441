"""``python -m fuzz``: run the fuzz targets for a time budget and report JSON lines.

Each selected target runs in a process of its own (``fuzz.worker``) for its share of the
budget, one after another. After each one a JSON line gives its executions, executions per
second, findings, the slowest input and the largest memory peak against its bound; a last line
sums up. The exit status is 1 when anything was found. ``--replay FILE`` runs one saved input
through a target in this process and prints what happens.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _engine(requested: str) -> tuple[str, str]:
    if requested != "auto":
        return requested, ""
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        return "hypothesis", f"atheris is not installed ({exc}); Hypothesis runs instead"
    return "atheris", ""


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _libfuzzer_stats(log: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            match = re.match(r"stat::(\w+):\s+(\d+)", line)
            if match:
                found[match.group(1)] = int(match.group(2))
    return found


def _crash_artifacts(log: Path) -> list[str]:
    if not log.exists():
        return []
    return re.findall(r"Test unit written to (\S+)", log.read_text(errors="replace"))


def run_target(name: str, seconds: float, args: argparse.Namespace, engine: str,
               workdir: Path) -> dict[str, Any]:
    """Run one target for ``seconds`` (restarting its worker if it dies early)."""
    deadline = time.monotonic() + seconds
    total: dict[str, Any] = {"target": name, "engine": engine, "executions": 0,
                             "seconds": 0.0, "max_time_per_input_ms": 0.0,
                             "max_memory": {"peak": 0, "bound": 0, "what": ""},
                             "findings": [], "restarts": 0}
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    attempt = 0
    while (left := deadline - time.monotonic()) > 1:
        stats_file = workdir / f"{name}.{attempt}.json"
        log = logs / f"{name}.log"
        cmd = [sys.executable, "-m", "fuzz.worker", name, "--seconds", f"{left:.0f}",
               "--stats", str(stats_file), "--engine", engine,
               "--max-payload", str(args.max_payload), "--trace-every", str(args.trace_every)]
        started = time.monotonic()
        with open(log, "w") as out:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        ran = time.monotonic() - started
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        lib = _libfuzzer_stats(log)
        # libFuzzer's count is exact; the worker's file may miss the last second
        total["executions"] += max(lib.get("number_of_executed_units", 0),
                                   stats.get("executions", 0))
        total["seconds"] += ran
        total["max_time_per_input_ms"] = max(total["max_time_per_input_ms"],
                                             stats.get("max_time_per_input_ms", 0.0))
        if stats.get("max_memory", {}).get("peak", 0) > total["max_memory"]["peak"]:
            total["max_memory"] = stats["max_memory"]
        total["findings"] += stats.get("findings", [])
        if rc != 0:
            total["findings"].append({
                "kind": "worker-died", "signature": f"{name}: exit status {rc}",
                "input": _crash_artifacts(log), "count": 1, "log": str(log),
                "detail": "libFuzzer stopped the run (crash, out of memory or a hang)",
            })
            attempt += 1
            total["restarts"] = attempt
            if attempt > 3:
                break
            continue
        break
    total["execs_per_s"] = round(total["executions"] / total["seconds"]) if total["seconds"] else 0
    total["seconds"] = round(total["seconds"], 1)
    total["findings_count"] = len(total["findings"])
    return total


def replay(path: Path, name: str, max_payload: int) -> int:
    from .engine import Monitor
    from .targets import TARGETS, Config

    with tempfile.TemporaryDirectory() as tmp:
        monitor = Monitor(TARGETS[name], Config(max_payload), Path(tmp), Path(tmp) / "s.json",
                          trace_every=2, engine="replay")
        data = path.read_bytes()
        monitor.one(data)  # timed
        monitor.one(data)  # traced (memory)
        stats = monitor.stats()
    _emit(stats)
    return 1 if stats["findings"] else 0


def main(argv: list[str] | None = None) -> int:
    from .targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="total budget, shared by the selected targets by weight: the frame "
                             "decoder and the dock 4 shares, all messages 2, each message type "
                             "and signed layout 1 (default 30)")
    parser.add_argument("--target", action="append", default=[],
                        help="target name or glob (repeatable; default: all). --list shows them")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--max-payload", type=int, default=1_048_580,
                        help="the largest frame payload the dock negotiates (default: USB's)")
    parser.add_argument("--trace-every", type=int, default=8,
                        help="measure memory with tracemalloc on every Nth input (default 8)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--replay", type=Path, help="run one saved input through --target")
    args = parser.parse_args(argv)

    if args.list:
        for name in TARGETS:
            print(name)
        return 0
    patterns = args.target or ["*"]
    names = [n for n in TARGETS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        parser.error(f"no target matches {patterns}; see --list")
    if args.replay:
        if len(names) != 1:
            parser.error("--replay needs exactly one --target")
        return replay(args.replay, names[0], args.max_payload)

    engine, why = _engine(args.engine)
    if why:
        print(f"fuzz: {why}", file=sys.stderr)
    share = args.minutes * 60 / sum(TARGETS[n].weight for n in names)
    results = []
    with tempfile.TemporaryDirectory(prefix="bwc-fuzz-") as tmp:
        for name in names:
            result = run_target(name, share * TARGETS[name].weight, args, engine, Path(tmp))
            _emit(result)
            results.append(result)
    findings = [dict(f, target=r["target"]) for r in results for f in r["findings"]]
    executions = sum(r["executions"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    _emit({
        "summary": True, "engine": engine, "targets": len(results), "executions": executions,
        "seconds": round(seconds, 1), "execs_per_s": round(executions / seconds) if seconds else 0,
        "max_time_per_input_ms": max((r["max_time_per_input_ms"] for r in results), default=0),
        "max_memory": max((r["max_memory"] for r in results), key=lambda mm: mm["peak"],
                          default={}),
        "findings": len(findings),
        "finding_signatures": [f"{f['target']}: {f['signature']}" for f in findings],
    })
    return 1 if findings else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
