"""``bwc-console``: thin argument parsing around the console's jobs (docs/console.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from . import __version__
from .cmd import EXIT_NO_ANSWER, run_cmd
from .commands import COMMANDS, ArgError, parse_args
from .fleet_report import fleet_report
from .ingest import Ingest, ack_payload, ingest_filters
from .keys import SigningKeyError, generate_key
from .mqtt import Link, LinkError
from .report_render import render
from .store import Store, StoreBusy
from .trust import TrustError, TrustFile
from .watch import run_watch

__all__ = ["main"]

log = logging.getLogger("bwc_console")

EXIT_ERROR = 2
_CA_HELP = "mqtts://: verify the broker against this CA file (default: the system's CAs)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bwc-console", description="reference central console "
                                "for bwc-dock docking stations (docs/console.md)")
    p.add_argument("--version", action="version", version=f"bwc-console {__version__}")
    p.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="stderr log level (default: INFO for ingest, WARNING otherwise)")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("watch", help="live table of every dock and camera")
    w.add_argument("--broker", required=True, help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    w.add_argument("--ca-file", help=_CA_HELP)
    w.add_argument("--unit", help="only this unit's docks (default: every unit)")
    w.add_argument("--once", action="store_true", help="print one snapshot and exit")
    w.add_argument("--json", action="store_true", help="JSON instead of the table")
    w.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to connect and collect the retained state (default 10)")
    w.add_argument("--quiet", type=float, default=0.5,
                   help="--once fallback: seconds without a message that end the collection "
                        "when the broker does not echo the console's sync token (default 0.5)")

    i = sub.add_parser("ingest", help="verify, store and acknowledge what the docks publish")
    i.add_argument("--broker", required=True)
    i.add_argument("--ca-file", help=_CA_HELP)
    i.add_argument("--store", required=True, type=Path, help="the console's store directory")
    i.add_argument("--trust", required=True, type=Path,
                   help='JSON {"docks": {id: b64 key}, "cameras": {uid: b64 key}}')
    i.add_argument("--unit", help="only this unit's docks (default: every unit)")
    i.add_argument("--timeout", type=float, default=30.0, help="seconds to connect")

    k = sub.add_parser("keygen", help="make the console's Ed25519 command-signing key")
    k.add_argument("--out", required=True, type=Path,
                   help="private key file (0600); the public key goes to OUT.pub")

    c = sub.add_parser("cmd", help="sign and send a command to a dock, print its result")
    c.add_argument("dock_id", metavar="DOCK")
    c.add_argument("name", metavar="NAME", choices=COMMANDS, help=", ".join(COMMANDS))
    c.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument: KEY=VALUE (a string; recording_ids: comma-separated) or "
                        "KEY:=JSON (any JSON value, e.g. officer_id:=null); repeatable")
    c.add_argument("--key", required=True, type=Path, help="the console's private key")
    c.add_argument("--broker", required=True)
    c.add_argument("--ca-file", help=_CA_HELP)
    c.add_argument("--unit", help="the dock's unit (default: from its retained identity)")
    c.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the dock's result (default 30)")

    r = sub.add_parser("report", help="fleet-wide annual review (Art. 17) from the store")
    r.add_argument("--store", required=True, type=Path)
    r.add_argument("--year", required=True, type=int)
    r.add_argument("--format", choices=("json", "csv", "html"), default="json")
    r.add_argument("--dock", help="only this dock")
    r.add_argument("--unit", help="only this unit's docks")
    r.add_argument("--out", type=Path, help="write here instead of stdout")
    return p


class _Lines:
    """stdout lines from any thread, each flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _ingest(ns: argparse.Namespace) -> int:
    trust = TrustFile(ns.trust)
    store = Store(ns.store, exclusive=True)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    links: list[Link] = []

    def send_ack(prefix: str, ids: list[str]) -> None:
        links[0].publish(f"{prefix}/acks", ack_payload(ids))

    ingest = Ingest(store, trust, send_ack=send_ack, report=_Lines(sys.stdout))
    link = Link(ns.broker, ingest_filters(ns.unit), lambda t, raw, _r: ingest.handle(t, raw),
                role="ingest", ca_file=ns.ca_file)
    links.append(link)
    try:
        link.start(ns.timeout)
        log.info("ingesting into %s (trust file %s)", ns.store, ns.trust)
        _Lines(sys.stdout)(f"ingest ready: store {ns.store}")
        stop.wait()
    finally:
        link.stop()
        store.close()
    return 0


def _keygen(ns: argparse.Namespace) -> int:
    try:
        key = generate_key(ns.out)
    except FileExistsError as exc:
        log.error("%s: refusing to overwrite an existing key", exc)
        return EXIT_ERROR
    sys.stdout.write(f"private key: {key.private_path} (mode 0600)\n"
                     f"public key:  {key.public_key_b64}\n"
                     f"key_id:      {key.key_id}\n"
                     f"public key file for the dock's console_public_keys: {key.public_path}\n")
    return 0


def _report(ns: argparse.Namespace) -> int:
    if not (ns.store / "console.db").exists():
        log.error("%s is not a console store (no console.db)", ns.store)
        return EXIT_ERROR
    store = Store(ns.store)
    try:
        text = render(fleet_report(store, ns.year, dock=ns.dock, unit=ns.unit), ns.format)
    finally:
        store.close()
    if ns.out is not None:
        ns.out.write_text(text, encoding="utf-8", newline="")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    level = ns.log_level or ("INFO" if ns.command == "ingest" else "WARNING")
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="bwc-console %(levelname)s %(name)s: %(message)s")
    try:
        if ns.command == "watch":
            return run_watch(ns.broker, ns.unit, sys.stdout, once=ns.once, as_json=ns.json,
                             timeout=ns.timeout, quiet=ns.quiet, ca_file=ns.ca_file)
        if ns.command == "ingest":
            return _ingest(ns)
        if ns.command == "keygen":
            return _keygen(ns)
        if ns.command == "cmd":
            return run_cmd(broker=ns.broker, dock_id=ns.dock_id, command=ns.name,
                           args=parse_args(ns.name, ns.arg), key=ns.key, unit=ns.unit,
                           timeout=ns.timeout, out=sys.stdout, ca_file=ns.ca_file)
        return _report(ns)
    except (LinkError, TrustError, StoreBusy, SigningKeyError, ArgError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_NO_ANSWER if ns.command == "cmd" else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
