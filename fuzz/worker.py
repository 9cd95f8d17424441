"""One fuzz target in this process: ``python -m fuzz.worker TARGET --seconds S --stats FILE``.

Started by ``python -m fuzz``, once per target. With atheris, the protocol package is imported
instrumented (coverage and comparison tracing for libFuzzer) and libFuzzer drives the run; the
corpus grows under ``fuzz/corpus/TARGET`` and libFuzzer's own crash, OOM and timeout artifacts
land in ``fuzz/findings/`` beside the monitor's findings.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _write_seeds(corpus: Path, seeds: list[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = corpus / f"seed-{hashlib.sha1(seed).hexdigest()}"
        if not path.exists():
            path.write_bytes(seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.worker")
    parser.add_argument("target")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), default="atheris")
    parser.add_argument("--max-payload", type=int, default=1_048_580)
    parser.add_argument("--trace-every", type=int, default=8)
    parser.add_argument("--findings", type=Path, default=HERE / "findings")
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["firmware_protocol"]):
            # imported here, instrumented, before the targets import them
            pass

    from .engine import Monitor, run_hypothesis
    from .targets import TARGETS, Config

    target = TARGETS[args.target]
    cfg = Config(max_payload=args.max_payload)
    args.findings.mkdir(parents=True, exist_ok=True)
    monitor = Monitor(target, cfg, args.findings, args.stats, trace_every=args.trace_every,
                      engine=args.engine)
    seeds = target.seeds(cfg)
    monitor.close()  # a stats file exists from the start
    if args.engine == "hypothesis":
        run_hypothesis(monitor, args.seconds, seeds, target.max_len(cfg))
        return 0
    corpus = args.corpus / target.name
    _write_seeds(corpus, seeds)
    libfuzzer_args = [
        sys.argv[0], str(corpus),
        f"-max_total_time={max(1, round(args.seconds))}",
        f"-max_len={target.max_len(cfg)}",
        f"-artifact_prefix={args.findings}/{target.name}-",
        "-print_final_stats=1",
        "-rss_limit_mb=4096",
        "-timeout=10",  # libFuzzer's own hang detector; the 100 ms limit is the monitor's
        "-reload=0",
    ]
    if args.seed:
        libfuzzer_args.append(f"-seed={args.seed}")
    atheris.Setup(libfuzzer_args, monitor.one)
    atheris.Fuzz()  # does not return: libFuzzer exits when the time is up
    return 0


if __name__ == "__main__":
    sys.exit(main())
