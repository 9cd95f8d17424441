"""``bwc-camsim``: run the reference camera on a pty (``--port``) or a USB bus (``--usb``).

Exit status: 0 after SIGTERM/SIGINT/SIGHUP, 2 for a bad command line / key / media / state
directory, 3 when the ``unplug-after-bytes`` fault fired (so a harness can tell it happened), 1 for
anything unexpected. The link at ``--port``, or the device directory on the ``--usb`` bus, is
removed on every exit path we control.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol.frames import ABS_MAX_PAYLOAD, INITIAL_MAX_PAYLOAD
from firmware_protocol.messages import MAX_CHUNK_SIZE, MAX_STRING

from .boot import CameraConfig, boot_camera
from .errors import ConfigError
from .eventlog import parse_log_event
from .faults import FAULT_HELP, parse_faults
from .keys import derive_camera_uid, load_or_create_key
from .line import LineShaper
from .model import DeviceInfo, PowerAndStorage
from .pty import PtyPort, PtyPump
from .pump import ExitReason
from .recordings import MediaItem, generate_items, parse_size, scan_media_dir
from .session import CameraSession
from .usb_bus import DEFAULT_USB_ID, UsbPort, UsbPump, parse_usb_id

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_OK", "EXIT_UNPLUGGED", "build_parser", "main"]

log = logging.getLogger("camsim")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_UNPLUGGED = 0, 1, 2, 3
STATE_KEY_NAME = "device-key.pem"
MAX_FAULT_CODES = 64  # what a STATUS message can carry


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ranged(low: int, high: int, parse: type[int] | None = None) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = _size(text) if parse is None else parse(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}")
        return value
    return check


def _uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        uid = b""
    if len(uid) != 16:
        raise argparse.ArgumentTypeError("expected 32 hex digits")
    return uid


def _generate(text: str) -> tuple[int, int]:
    count, sep, size = text.partition(":")
    if not sep or not count.isdigit():
        raise argparse.ArgumentTypeError("expected N:SIZE, e.g. 3:1M")
    return int(count), _size(size)


def _usb_id(text: str) -> tuple[int, int]:
    try:
        return parse_usb_id(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bwc-camsim",
        description="Reference body-worn camera emulator on a pty or a simulated USB bus.",
        epilog="Prints 'camsim ready port=PATH uid=HEX' (or 'camsim ready usb=BUS_DIR/CHAIN "
        "uid=HEX') on stderr once the port or device exists. Exit status: 0 stopped by a "
        "signal, 1 error, 2 configuration error, 3 unplug fault fired.")
    line = p.add_mutually_exclusive_group(required=True)
    line.add_argument("--port", type=Path,
                      help="symlink to create for the camera's serial device")
    line.add_argument("--usb", type=Path, metavar="BUS_DIR",
                      help="plug into the simulated USB bus BUS_DIR (see camsim/usb_layout.py)")
    p.add_argument("--usb-id", type=_usb_id, metavar="VVVV:PPPP",
                   help=f"USB vendor:product id with --usb (default "
                   f"{DEFAULT_USB_ID[0]:04x}:{DEFAULT_USB_ID[1]:04x})")
    p.add_argument("--key", type=Path, help="Ed25519 PKCS#8 PEM device key, created if missing "
                   "(public key written to KEY.pub); default STATE_DIR/device-key.pem, else a "
                   "throw-away key")
    p.add_argument("--camera-uid", type=_uid, help="16-byte uid as 32 hex (default: from the key)")
    info = p.add_argument_group("device info")
    for name, default in (("model", "BWC-SIM"), ("firmware", "camsim-0.1"), ("serial", None),
                          ("officer-id", ""), ("officer-name", ""), ("unit-code", ""),
                          ("unit-name", "")):
        info.add_argument(f"--{name}", default=default,
                          help="default: SIM- + uid prefix" if name == "serial" else None)
    media = p.add_mutually_exclusive_group()
    media.add_argument("--media-dir", type=Path, help="every file becomes a sealed recording, "
                       "in name order (.mp4 .mkv .ts .wav .aac .amr .jpg .png)")
    media.add_argument("--generate", type=_generate, metavar="N:SIZE",
                       help="N deterministic recordings of SIZE bytes (K/M/G suffixes)")
    p.add_argument("--chunk-size", type=_ranged(1, MAX_CHUNK_SIZE), default=256 * 1024,
                   metavar="BYTES", help="signed chunk size (default 256K)")
    p.add_argument("--max-payload", type=_ranged(INITIAL_MAX_PAYLOAD, ABS_MAX_PAYLOAD),
                   default=256 * 1024, metavar="BYTES",
                   help="largest frame payload the camera accepts (default 256K)")
    p.add_argument("--battery", type=_ranged(0, 100, int), default=100, metavar="PCT",
                   help="battery level (default 100)")
    p.add_argument("--not-charging", dest="charging", action="store_false",
                   help="report not charging (default: charging, it is docked)")
    p.add_argument("--storage-total", type=_size, default=64 << 30, metavar="BYTES",
                   help="default 64G")
    p.add_argument("--storage-free", type=_size, metavar="BYTES",
                   help="free space at start-up (default: total minus the recordings)")
    p.add_argument("--bitrate", type=_ranged(1, 0xFFFFFFFF, int), default=8_000_000,
                   metavar="BPS", help="video bitrate, also used for nominal recording "
                   "lengths (default 8000000; audio files assume 128 kbit/s)")
    p.add_argument("--clock-skew", type=float, default=0.0, metavar="SECONDS",
                   help="camera clock minus host clock at first start")
    p.add_argument("--drift-ppm", type=float, default=0.0, metavar="N",
                   help="camera clock rate error, from start or the last SET_TIME")
    p.add_argument("--self-test-fault", type=_ranged(0, 0xFFFF, int), action="append",
                   default=[], metavar="CODE", help="repeatable: self-test fails with CODE")
    p.add_argument("--log-event", action="append", default=[], metavar="KIND@OFFSET_S[:REC]",
                   help="add battery_empty / storage_full / fault to the event log at now + "
                   "OFFSET_S, or at recording REC's end + OFFSET_S")
    p.add_argument("--state-dir", type=Path, help="camera state that survives restarts "
                   "(clock, released recordings, event log)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help=f"repeatable: {FAULT_HELP}")
    p.add_argument("--verbose", action="store_true", help="also log line traffic sizes")
    return p


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        text = f"camsim {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _config(args: argparse.Namespace) -> CameraConfig:
    key_path: Path | None = args.key
    if args.state_dir is not None:
        try:  # first: the key may live in it
            args.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create --state-dir {args.state_dir}: {exc.strerror}"
                              ) from None
        if key_path is None:
            key_path = args.state_dir / STATE_KEY_NAME
    if key_path is None:
        log.warning("no --key or --state-dir: signing with a throw-away key")
        key = Ed25519PrivateKey.generate()
    else:
        key, created = load_or_create_key(key_path)
        if created:
            log.info("created device key %s", key_path)
    uid: bytes = args.camera_uid or derive_camera_uid(key)
    items: list[MediaItem] = []
    if args.media_dir is not None:
        items = scan_media_dir(args.media_dir)
    elif args.generate is not None:
        items = generate_items(uid, *args.generate)
    device = DeviceInfo(args.model, args.firmware, args.serial or f"SIM-{uid.hex()[:8].upper()}",
                        args.officer_id, args.officer_name, args.unit_code, args.unit_name)
    for name in DeviceInfo.__dataclass_fields__:
        if len(getattr(device, name).encode("utf-8")) > MAX_STRING:
            raise ConfigError(f"--{name.replace('_', '-')} is over {MAX_STRING} UTF-8 bytes")
    if len(args.self_test_fault) > MAX_FAULT_CODES:
        raise ConfigError(f"at most {MAX_FAULT_CODES} --self-test-fault codes")
    power = PowerAndStorage(args.battery, args.charging, args.storage_total, args.storage_free,
                            args.bitrate, tuple(args.self_test_fault))
    return CameraConfig(
        key=key, camera_uid=uid, device=device, power=power, media=items,
        chunk_size=args.chunk_size, clock_skew_s=args.clock_skew, drift_ppm=args.drift_ppm,
        state_dir=args.state_dir, faults=parse_faults(args.fault),
        log_events=[parse_log_event(s) for s in args.log_event],
    )


class _Stopper:
    """SIGTERM/SIGINT/SIGHUP set a flag and wake the pump's select() through a pipe."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.wake_fd, self._write_fd = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._write_fd, False)
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd)
        self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def close(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self.wake_fd)
        os.close(self._write_fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.usb_id is not None and args.usb is None:
        parser.error("--usb-id needs --usb")
    _configure_logging(args.verbose)
    try:
        faults = parse_faults(args.fault)
        camera = boot_camera(_config(args))
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    # From here every exit path removes the link (or unplugs) and logs POWER_OFF; signals only
    # set a flag.
    stopper = _Stopper()
    port: PtyPort | UsbPort
    if args.usb is not None:
        port = UsbPort(args.usb, usb_id=args.usb_id or DEFAULT_USB_ID,
                       product=camera.device.model, serial=camera.device.serial)
    else:
        port = PtyPort(args.port)
    reason = ExitReason.STOPPED
    status = EXIT_OK
    try:
        port.open()
        session = CameraSession(camera, max_payload=args.max_payload)
        shaper = LineShaper(faults.line, seed=camera.camera_uid)
        if isinstance(port, UsbPort):
            log.info("ready usb=%s uid=%s", port.path, camera.camera_uid.hex())
            pump: PtyPump | UsbPump = UsbPump(port, session, shaper, stopper.wake_fd)
        else:
            log.info("ready port=%s uid=%s", args.port, camera.camera_uid.hex())
            pump = PtyPump(port, session, shaper, stopper.wake_fd)
        reason = pump.run(stopper.requested)
        if reason is ExitReason.UNPLUGGED:
            status = EXIT_UNPLUGGED
    except ConfigError as exc:
        log.error("%s", exc)
        status = EXIT_CONFIG
    except Exception:
        log.exception("emulator failed")
        status = EXIT_ERROR
    finally:
        port.close()
        stopper.close()
        try:
            camera.power_off("unplugged" if reason is ExitReason.UNPLUGGED else "")
        except OSError as exc:
            log.error("cannot save state: %s", exc)
            status = EXIT_ERROR
        if status != EXIT_CONFIG:
            how = reason.value if stopper.signum is None else signal.Signals(stopper.signum).name
            log.info("stopped: %s", how)
    return status


if __name__ == "__main__":
    sys.exit(main())
