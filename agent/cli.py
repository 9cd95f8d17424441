"""``dock-agent``: thin subcommands over the agent's modules (parse, call, print).

Every error ends with one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware_protocol.errors import ProtocolError
from firmware_protocol.signing import load_public_key

from . import cli_compliance, cli_keys, cli_tls
from .cli_compliance import CliError
from .compliance.audit import AuditLog, cli_actor
from .config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from .manifest import ManifestError, verify_footage, verify_manifest
from .registry import Registry
from .store.errors import StoreError
from .store.footage import FootageStore
from .store.keys import KeyStore

__all__ = ["main"]

log = logging.getLogger("agent.cli")




def _setup_logging(level: int) -> None:
    # Under journald the journal adds timestamps and the unit name itself.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def _paths(cfg: Config) -> tuple[Path, Path]:
    return cfg.state_dir, cfg.state_dir / "footage"


def _stored(cfg: Config, rid_hex: str) -> tuple[FootageStore, bytes]:
    try:
        rid = bytes.fromhex(rid_hex)
    except ValueError:
        raise CliError(f"recording id {rid_hex!r} is not hex") from None
    if len(rid) != 16:
        raise CliError(f"recording id must be 32 hex digits, got {len(rid_hex)}")
    state, footage = _paths(cfg)
    return FootageStore(footage, KeyStore(state, create=False)), rid


def _audit(cfg: Config, action: str, **details: object) -> None:
    """Append-only, hash-chained record of access to footage (Art. 18), shared with the
    daemon: appends from several processes take turns and stay one chain."""
    log_ = AuditLog(cfg.state_dir)
    try:
        log_.append(action, cli_actor(), **details)
    finally:
        log_.close()


# -- subcommands -----------------------------------------------------------------------------

def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from .daemon import Agent

    # A hung agent gets SIGABRT (systemd's watchdog, and a stop past TimeoutStopSec with the
    # unit's TimeoutStopFailureMode=abort): every thread's stack goes to stderr, the journal.
    faulthandler.enable()
    agent = Agent(cfg)
    agent.start()
    agent.run()
    return 0


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    path = cfg.state_dir / "status.json"
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no status at {path}: is the agent running?") from None
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(status.get("summary", ""))
    for uid, cam in sorted(status.get("cameras", {}).items()):
        state = "docked" if cam.get("docked") else "away"
        ready = "ready" if cam.get("ready") else "not ready: " + ",".join(cam.get("reasons", []))
        print(f"{uid} {state:6} slot={cam.get('slot', '-')} battery={cam.get('battery_pct')}% "
              f"{ready}")
    return 0


def cmd_identity(cfg: Config, args: argparse.Namespace) -> int:
    keys = KeyStore(cfg.state_dir, create=False)
    print(f"{cfg.dock_id} {base64.b64encode(keys.public_key_raw).decode()}")
    return 0


def cmd_enroll(cfg: Config, args: argparse.Namespace) -> int:
    try:
        uid = bytes.fromhex(args.camera_uid)
    except ValueError:
        raise CliError("--camera-uid must be 32 hex digits") from None
    if len(uid) != 16:
        raise CliError("--camera-uid must be 32 hex digits")
    try:
        key = load_public_key(Path(args.public_key).read_bytes())
    except (OSError, ValueError) as exc:
        raise CliError(f"--public-key {args.public_key}: {exc}") from None
    registry = Registry(cfg.state_dir / "state.json")
    record = registry.enroll(uid, key, officer_id=args.officer, by="cli")
    _audit(cfg, "enroll", camera_uid=uid.hex(), officer_id=args.officer)
    print(f"enrolled {record.camera_uid.hex()} officer={record.officer_id or '-'}")
    return 0


def cmd_cameras(cfg: Config, args: argparse.Namespace) -> int:
    for rec in Registry(cfg.state_dir / "state.json").cameras():
        key = base64.b64encode(rec.public_key.public_bytes_raw()).decode()
        print(f"{rec.camera_uid.hex()} officer={rec.officer_id or '-'} key={key} "
              f"enrolled_by={rec.enrolled_by} quarantined={len(rec.quarantined)}")
    return 0


def cmd_verify(cfg: Config, args: argparse.Namespace) -> int:
    if bool(args.recording_id) == bool(args.all):
        raise CliError("give a RECORDING_ID or --all")
    state, footage = _paths(cfg)
    keys = KeyStore(state, create=False)
    store = FootageStore(footage, keys)
    registry = Registry(state / "state.json")
    dock_key = keys.signing_key.public_key()
    ids = [bytes.fromhex(args.recording_id)] if args.recording_id else list(store.list_stored())
    failures = 0
    for rid in ids:
        stored = store.stored(rid)
        try:
            if stored is None:
                raise CliError("not stored")
            manifest = stored.manifest
            if manifest is None:
                raise CliError("no manifest")
            camera = registry.get(bytes.fromhex(manifest["camera_uid"]))
            if camera is None:
                raise CliError("camera not enrolled")
            verify_manifest(manifest, dock_key, camera.public_key)
            verify_footage(manifest, stored.read_chunks())
            print(f"{rid.hex()} OK")
        except (CliError, ManifestError, StoreError) as exc:
            failures += 1
            print(f"{rid.hex()} FAILED: {exc}")
    _audit(cfg, "verify", recordings=[r.hex() for r in ids], failures=failures)
    return 1 if failures else 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    store, rid = _stored(cfg, args.recording_id)
    stored = store.stored(rid)
    if stored is None:
        raise CliError(f"recording {rid.hex()} is not stored on this dock")
    out = Path(args.out)
    if out.exists():
        raise CliError(f"{out} exists; refusing to overwrite")
    _audit(cfg, "export", recording_id=rid.hex(), out=str(out.resolve()))
    stored.export(out)
    print(f"exported {rid.hex()} to {out}")
    return 0


def cmd_demo(cfg: Config | None, args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(forever=args.forever, workdir=Path(args.workdir) if args.workdir else None)


# -- parsing ---------------------------------------------------------------------------------

Handler = Callable[[Config, argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dock-agent", description="Body-worn camera dock agent")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=str(DEFAULT_CONFIG_PATH),
                        help=f"agent configuration (default {DEFAULT_CONFIG_PATH})")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common], help="run the daemon")
    s = sub.add_parser("status", parents=[common], help="what the running agent reports")
    s.add_argument("--json", action="store_true")
    sub.add_parser("identity", parents=[common], help="dock id and Ed25519 public key")
    e = sub.add_parser("enroll", parents=[common], help="enrol a camera's device key")
    e.add_argument("--camera-uid", required=True)
    e.add_argument("--public-key", required=True, help="PEM (SubjectPublicKeyInfo) file")
    e.add_argument("--officer")
    sub.add_parser("cameras", parents=[common], help="list enrolled cameras")
    v = sub.add_parser("verify", parents=[common], help="re-check stored footage")
    v.add_argument("recording_id", nargs="?")
    v.add_argument("--all", action="store_true")
    x = sub.add_parser("export", parents=[common], help="write a recording's original bytes")
    x.add_argument("recording_id")
    x.add_argument("--out", required=True)
    cli_compliance.add_parsers(sub, common)
    cli_tls.add_parsers(sub, common)
    cli_keys.add_parsers(sub, common)
    d = sub.add_parser("demo", parents=[common], help="emulated cameras + local broker")
    d.add_argument("--forever", action="store_true", help="keep running after the tour")
    d.add_argument("--workdir", help="keep demo state here (default: a temp dir)")
    return p


_HANDLERS: dict[str, Handler] = {
    "run": cmd_run, "status": cmd_status, "identity": cmd_identity, "enroll": cmd_enroll,
    "cameras": cmd_cameras, "verify": cmd_verify, "export": cmd_export,
    **cli_compliance.HANDLERS, **cli_tls.HANDLERS, **cli_keys.HANDLERS,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            _setup_logging(logging.WARNING)
            return cmd_demo(None, args)
        cfg = load_config(Path(args.config))
        _setup_logging(cfg.log_level_number if args.command == "run" else logging.WARNING)
        return _HANDLERS[args.command](cfg, args)
    except (*cli_compliance.ERRORS, ConfigError, StoreError, ProtocolError, OSError,
            ValueError, KeyError) as exc:
        print(f"dock-agent {args.command}: error: {cli_compliance.describe(exc)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
