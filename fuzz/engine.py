"""Runs one target under a fuzzing engine and records what it finds.

:class:`Monitor` wraps the target: it counts executions, times every input, samples memory
with tracemalloc, and turns an escaping exception, a broken invariant, an input slower than the
limit or memory above the bound into a finding, saved under ``fuzz/findings/`` with the input.
It never lets an exception reach the engine, so one finding does not end the run. Statistics go
to a JSON file that the runner (``python -m fuzz``) reads back: libFuzzer ends the process with
``exit()``, so nothing can be reported at the end from Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .targets import Config, Measure, Probe, Target, Violation

__all__ = ["Monitor", "run_hypothesis"]

TIME_LIMIT_S = 0.100  # no input may take longer (issue 6)
_STATS_EVERY_S = 1.0


class Monitor:
    def __init__(self, target: Target, cfg: Config, findings: Path, stats: Path, *,
                 trace_every: int = 8, engine: str = "atheris") -> None:
        self.target = target
        self.cfg = cfg
        self.findings_dir = findings
        self.stats_path = stats
        self.trace_every = max(1, trace_every)
        self.engine = engine
        self.started = time.monotonic()
        self.executions = 0
        self.traced = 0
        self.max_time_s = 0.0
        self.max_time_len = 0
        self.max_memory: dict[str, Any] = {"peak": 0, "bound": 0, "what": ""}
        self.findings: dict[str, dict[str, Any]] = {}
        self._last_write = 0.0

    # -- one input ---------------------------------------------------------------------------

    def one(self, data: bytes) -> None:
        self.executions += 1
        trace = self.executions % self.trace_every == 0
        elapsed, measure = self._run(data, trace)
        if trace:
            self.traced += 1
            if measure is not None:
                self._memory(data, measure)
        else:
            if elapsed > TIME_LIMIT_S:
                # A slow input is run twice more: a finding only if it is slow every time
                # (not a scheduler hiccup or a garbage collection).
                elapsed = min(elapsed, *(self._run(data, False)[0] for _ in range(2)))
                if elapsed > TIME_LIMIT_S:
                    self._record("slow", data, f"{elapsed * 1000:.1f} ms for {len(data)} bytes",
                                 f"slow:{len(data).bit_length()}", worst=elapsed)
            if elapsed > self.max_time_s:
                self.max_time_s, self.max_time_len = elapsed, len(data)
                self._write_stats(force=True)
        self._write_stats()

    def _run(self, data: bytes, trace: bool) -> tuple[float, Measure | None]:
        """Run one input: the seconds spent in the protocol code, and the memory measure."""
        probe = Probe(trace)
        try:
            measure = self.target.run(data, probe, self.cfg)
        except Exception as exc:  # the target lets through everything but RemoteProtocolError
            self._exception(data, exc)
            return probe.seconds, None
        return probe.seconds, measure

    def _memory(self, data: bytes, measure: Measure) -> None:
        if measure.peak > self.max_memory["peak"]:
            self.max_memory = {"peak": measure.peak, "bound": measure.bound,
                               "what": measure.what}
            self._write_stats(force=True)
        if measure.peak > measure.bound:
            self._record("memory", data, f"peak {measure.peak} bytes > bound {measure.bound} "
                         f"({measure.what})", f"memory:{measure.what.split()[0]}",
                         worst=measure.peak)

    def _exception(self, data: bytes, exc: Exception) -> None:
        kind = "violation" if isinstance(exc, Violation) else "exception"
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "firmware_protocol" in f.filename] or frames
        where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
        text = re.sub(r"\d+", "N", str(exc))[:120]
        detail = "".join(traceback.format_exception(exc))
        self._record(kind, data, detail, f"{kind}:{type(exc).__name__}:{where}:{text}")

    # -- findings and statistics ---------------------------------------------------------------

    def _record(self, kind: str, data: bytes, detail: str, signature: str,
                worst: float | None = None) -> None:
        """Save the input of a new finding; for slow/memory ones keep the worst input."""
        seen = self.findings.get(signature)
        if seen is not None:
            seen["count"] += 1
            if worst is None or worst <= seen["worst"]:
                return
        key = hashlib.sha1(f"{self.target.name}:{signature}".encode()).hexdigest()[:10]
        stem = f"{self.target.name}-{kind}-{key}"
        saved = self.findings_dir / f"{stem}.bin"
        self.findings_dir.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(data)
        (self.findings_dir / f"{stem}.txt").write_text(
            f"target: {self.target.name}\nkind: {kind}\nsignature: {signature}\n"
            f"input: {len(data)} bytes, sha1 {hashlib.sha1(data).hexdigest()}\n"
            f"replay: python -m fuzz --replay {saved} "
            f"--target {self.target.name}\n\n{detail}\n")
        self.findings[signature] = {
            "kind": kind, "signature": signature, "input": str(saved),
            "count": 1 if seen is None else seen["count"], "worst": worst or 0,
            "detail": detail.strip().splitlines()[-1][:300] if detail.strip() else "",
        }
        self._write_stats(force=True)

    def stats(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "target": self.target.name, "engine": self.engine,
            "executions": self.executions, "traced": self.traced,
            "seconds": round(elapsed, 1),
            "max_time_per_input_ms": round(self.max_time_s * 1000, 3),
            "max_time_input_len": self.max_time_len,
            "max_memory": self.max_memory,
            "findings": list(self.findings.values()),
        }

    def _write_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < _STATS_EVERY_S:
            return
        self._last_write = now
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.stats()))
        os.replace(tmp, self.stats_path)

    def close(self) -> None:
        self._write_stats(force=True)


# -- the Hypothesis engine (when atheris is missing) ---------------------------------------------


def _mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randrange(1, 5)):
        pos = rng.randrange(len(data) + 1)
        op = rng.randrange(4)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 2:
            del data[pos : pos + rng.randrange(1, 65)]
        else:
            del data[pos:]
    return bytes(data)


def run_hypothesis(monitor: Monitor, seconds: float, seeds: list[bytes], max_len: int,
                   clock: Callable[[], float] = time.monotonic) -> None:
    """Seeds first, then Hypothesis-generated inputs (random bytes and mutated seeds), in
    batches until ``seconds`` have passed. No coverage guidance: a weaker fallback."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    for seed in seeds:
        monitor.one(seed)
    deadline = clock() + seconds
    inputs = st.one_of(
        st.binary(max_size=min(max_len, 4096)),
        st.tuples(st.sampled_from(seeds), st.randoms(use_true_random=False)).map(
            lambda pair: _mutate(pair[0], pair[1])[:max_len]) if seeds else st.nothing(),
    )

    @settings(max_examples=1000, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def batch(data: bytes) -> None:
        if clock() < deadline:
            monitor.one(data)

    while clock() < deadline:
        batch()
    monitor.close()
