"""The emulator on the simulated USB bus, seen through pyusb's public API and our backend.

Everything is real: ``bwc-camsim --usb`` subprocesses, pyusb's ``usb.core``/``usb.util`` code
paths, and a dock driver speaking the protocol over the bulk endpoints.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import signal
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import usb.control
import usb.core
import usb.util

from camsim.usb_backend import get_backend
from camsim.usb_descriptors import camera_record
from firmware_protocol import messages as m
from firmware_protocol.frames import FrameError, FrameErrorKind

from .camsim_process import Camsim, run_to_exit, running_usb, start_usb_camsim, wait_until
from .host import ChunkRead, Host, LineClosed, NoReply
from .usb_line import UsbLine, bulk_endpoints

VID, PID = 0x1D6B, 0x0104
ENODEV_CODE, TIMEOUT_CODE, BUSY_CODE, PIPE_CODE = -4, -7, -6, -9


def find_all(bus: Path, **match: int) -> list[Any]:
    return list(usb.core.find(find_all=True, backend=get_backend(bus), **match))


def cameras(bus: Path) -> list[Any]:
    return find_all(bus, idVendor=VID, idProduct=PID)


def only_camera_with(bus: Path, vid: int, pid: int) -> Any:
    devices = find_all(bus, idVendor=vid, idProduct=pid)
    assert len(devices) == 1, devices
    return devices[0]


def only_camera(bus: Path) -> Any:
    return only_camera_with(bus, VID, PID)


def device_dirs(bus: Path) -> list[str]:
    return sorted(n for n in os.listdir(bus) if not n.startswith("."))


def assert_gone(exc: pytest.ExceptionInfo[usb.core.USBError]) -> None:
    assert exc.value.errno == errno.ENODEV
    assert exc.value.backend_error_code == ENODEV_CODE


def session(host: Host, cam: Camsim) -> list[m.RecordingInfo]:
    identity = host.hello()
    assert identity.camera_uid == cam.uid
    assert host.authenticate(cam.public_key)
    return host.list_recordings()


def test_device_is_enumerated_from_ready_until_exit(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    assert cameras(bus) == []  # no bus directory yet: an empty bus
    cam = start_usb_camsim(bus, "--generate", "1:64K")
    assert cam.port == bus / "1-1.1"
    dev = only_camera(bus)
    assert (dev.bus, dev.port_numbers, dev.port_number) == (1, (1, 1), 1)
    assert find_all(bus, idVendor=VID, idProduct=PID + 1) == []
    assert dev == only_camera(bus)  # one backend per directory: pyusb's equality holds
    assert cam.stop() == 0
    assert cameras(bus) == []
    assert device_dirs(bus) == []  # the device directory went with the emulator


def test_kill_9_leaves_a_stale_device_that_is_hidden_then_swept(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    first = start_usb_camsim(bus, "--generate", "1:64K")
    old, never_opened = only_camera(bus), only_camera(bus)
    old.set_configuration()  # an open handle, as a dock would hold
    first.stop(signal.SIGKILL)
    assert device_dirs(bus) == ["1-1.1"]  # nobody removed it...
    assert cameras(bus) == []  # ...but it is not a device
    with pytest.raises(usb.core.USBError) as exc:
        usb.util.get_string(old, old.iSerialNumber, 0x0409)
    assert_gone(exc)

    with running_usb(bus, "--generate", "1:64K", "--serial", "SECOND") as second:
        assert second.port == bus / "1-1.1"  # the stale directory was swept, the port reused
        new = only_camera(bus)
        assert new.serial_number == "SECOND"
        assert new.address != old.address  # a new enumeration, a new address
        for stale in (old, never_opened):  # neither reaches the device now in that port
            with pytest.raises(usb.core.USBError) as exc:
                stale.set_configuration()
            assert_gone(exc)


def test_descriptors_and_strings_read_like_a_real_device(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    model = "BWC-9 " + "x" * 200  # longer than a string descriptor can carry
    with running_usb(bus, "--generate", "1:64K", "--usb-id", "1234:abcd", "--serial", "SN-0042",
                     "--model", model):
        assert cameras(bus) == []
        dev = only_camera_with(bus, 0x1234, 0xABCD)
        assert (dev.bLength, dev.bDescriptorType, dev.bcdUSB) == (18, 1, 0x0200)
        assert (dev.bDeviceClass, dev.bMaxPacketSize0, dev.bNumConfigurations) == (0, 64, 1)
        assert dev.speed == usb.util.SPEED_HIGH
        assert dev.parent is None
        assert dev.langids == (0x0409,)
        assert usb.util.get_string(dev, dev.iSerialNumber) == "SN-0042"
        assert dev.manufacturer == "bwc-dock camsim"
        assert dev.product == model[:126]

        cfg = dev[0]
        assert (cfg.bConfigurationValue, cfg.bNumInterfaces, cfg.wTotalLength) == (1, 1, 32)
        intf = cfg[(0, 0)]
        assert (intf.bInterfaceClass, intf.bNumEndpoints) == (0xFF, 2)
        for ep in intf:
            assert usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
            assert ep.wMaxPacketSize == 512
        out_ep, in_ep = bulk_endpoints(dev)
        assert (out_ep.bEndpointAddress, in_ep.bEndpointAddress) == (0x01, 0x81)
        assert dev.get_active_configuration().bConfigurationValue == 1

        raw = usb.control.get_descriptor(dev, 18, usb.util.DESC_TYPE_DEVICE, 0)
        assert struct.unpack("<BBHBBBBHHHBBBB", raw) == (
            18, 1, 0x0200, 0, 0, 0, 64, 0x1234, 0xABCD, dev.bcdDevice, 1, 2, 3, 1)
        raw = usb.control.get_descriptor(dev, 255, usb.util.DESC_TYPE_CONFIG, 0)
        assert len(raw) == 32 and raw[9 + 5] == 0xFF and raw[18 + 2] == 0x01
        assert usb.control.get_descriptor(dev, 4, usb.util.DESC_TYPE_CONFIG, 0).tolist() == [
            9, 2, 32, 0]  # wLength shorter than the descriptor: cut, as a device does
        with pytest.raises(usb.core.USBError) as exc:  # a request the camera does not know
            dev.ctrl_transfer(0xC0, 0x42, 0, 0, 8)
        assert (exc.value.errno, exc.value.backend_error_code) == (errno.EPIPE, PIPE_CODE)
        assert "Vendor Specific" in str(dev)  # pyusb's full dump walks every descriptor
        usb.util.dispose_resources(dev)


def test_protocol_session_over_bulk_endpoints_verifies_every_recording(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "2:700K", "--chunk-size", "256K") as cam:
        line = UsbLine(only_camera(bus), read_size=5)
        with Host(line, max_payload=1 << 20) as host:
            assert line.ep_out.write(bytes(3 << 20), 5000) == 3 << 20  # any length; noise
            identity = host.hello()  # read 5 bytes at a time: every read returns <= 5
            assert identity.camera_uid == cam.uid and identity.max_payload == 256 * 1024
            assert line.read_sizes and max(line.read_sizes) <= 5
            line.read_size = 1 << 20
            assert host.authenticate(cam.public_key)
            recs = host.list_recordings()
            assert [r.chunk_count for r in recs] == [3, 3]
            for rec in recs:
                check = host.read_recording(rec, cam.public_key)
                assert check.ok, check
                assert len(check.data) == rec.size
            assert host.release(recs[0].recording_id).freed_bytes == recs[0].size
            assert max(line.read_sizes) > 64 * 1024  # large transfers, not packet-sized ones

            line.dev.reset()  # a port reset: the camera starts a new session
            session(Host(line), cam)
        assert "host released" in cam.stderr


def test_read_timeout_raises_usb_timeout_error_as_libusb_does(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:64K"):
        dev = only_camera(bus)
        _, in_ep = bulk_endpoints(dev)
        start = time.monotonic()
        with pytest.raises(usb.core.USBTimeoutError) as exc:
            in_ep.read(array.array("B", bytes(4096)), 200)
        elapsed = time.monotonic() - start
        assert (exc.value.errno, exc.value.backend_error_code) == (errno.ETIMEDOUT, TIMEOUT_CODE)
        assert exc.value.strerror == "Operation timed out"
        assert 0.19 <= elapsed < 2.0
        usb.util.dispose_resources(dev)


def test_stall_times_out_every_read_but_the_device_stays(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:1M", "--fault", "stall-after-bytes=100K") as cam, \
            Host(UsbLine(only_camera(bus))) as host:
        rec = session(host, cam)[0]
        with pytest.raises(NoReply):
            host.read_chunk(rec.recording_id, 0, timeout=1.0)
        host.conn.cancel()
        with pytest.raises(NoReply):
            host.request(m.GetStatus(), timeout=0.3)
        assert host.received == 100 * 1024
        assert len(cameras(bus)) == 1 and cam.proc.poll() is None
    assert cam.proc.returncode == 0


def test_unplug_mid_transfer_makes_every_later_call_fail_with_enodev(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    limit = 150_000
    cam = start_usb_camsim(bus, "--generate", "1:1M", "--fault", f"unplug-after-bytes={limit}")
    dev = only_camera(bus)
    line = UsbLine(dev)
    host = Host(line)
    rec = session(host, cam)[0]
    with pytest.raises(LineClosed):
        host.read_chunk(rec.recording_id, 0)
    assert host.received == limit  # every byte sent before the unplug arrived, none after
    assert line.error is not None and line.error.errno == errno.ENODEV
    assert line.error.backend_error_code == ENODEV_CODE
    assert cameras(bus) == []  # gone from enumeration before the connection broke

    calls = [
        lambda: line.ep_in.read(4096, 100),
        lambda: line.ep_out.write(b"x", 100),
        lambda: usb.util.get_string(dev, dev.iSerialNumber, 0x0409),
        lambda: dev.ctrl_transfer(0x80, 0x06, 0x0100, 0, 18),
        lambda: dev.clear_halt(0x81),
    ]
    for call in calls:
        with pytest.raises(usb.core.USBError) as exc:
            call()
        assert_gone(exc)
    usb.util.dispose_resources(dev)  # releasing a vanished device is quietly fine
    with pytest.raises(usb.core.USBError) as exc:
        dev.set_configuration()  # reopening it is not
    assert_gone(exc)
    assert cam.proc.wait(10) == 3
    assert f"line closed after {limit} bytes" in cam.stderr
    wait_until(lambda: device_dirs(bus) == [], 10, "the device directory to go")


def test_garbage_between_frames_is_skipped_over_usb_too(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:700K", "--fault", "garbage-every=10000") as cam, \
            Host(UsbLine(only_camera(bus))) as host:
        rec = session(host, cam)[0]
        assert host.read_recording(rec, cam.public_key).ok
        errors = [e for e in host.events if isinstance(e, FrameError)]
        assert len(errors) >= 10 and {e.kind for e in errors} == {FrameErrorKind.GARBAGE}


def test_two_emulators_get_their_own_port_chain_address_and_session(tmp_path: Path) -> None:
    bus = tmp_path / ("a-bus-directory-deep-enough-that-its-socket-paths-exceed-sun-path-" * 2)
    assert len(os.fsencode(bus / "1-1.1" / "bulk.sock")) > 107
    with running_usb(bus, "--generate", "1:64K") as one, \
            running_usb(bus, "--generate", "1:64K") as two:
        assert (one.port.name, two.port.name) == ("1-1.1", "1-1.2")
        devices = cameras(bus)
        assert [d.port_numbers for d in devices] == [(1, 1), (1, 2)]
        assert devices[0].address != devices[1].address
        for dev, cam in zip(devices, (one, two), strict=True):
            with Host(UsbLine(dev)) as host:
                session(host, cam)
        assert one.stop() == 0
        assert [d.port_numbers for d in cameras(bus)] == [(1, 2)]
        with running_usb(bus, "--generate", "1:64K") as three:
            assert three.port.name == "1-1.1"  # the lowest free port


def test_a_claimed_interface_is_busy_for_another_handle(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:64K") as cam:
        first, second = only_camera(bus), only_camera(bus)
        with Host(UsbLine(first)) as host:
            host.hello()
            with pytest.raises(usb.core.USBError) as exc:
                usb.util.claim_interface(second, 0)
            assert (exc.value.errno, exc.value.backend_error_code) == (errno.EBUSY, BUSY_CODE)
        with Host(UsbLine(second)) as host:  # released: the next host gets a fresh session
            session(host, cam)
            chunk = host.read_chunk(host.list_recordings()[0].recording_id, 0)
            assert isinstance(chunk, ChunkRead)


@pytest.mark.parametrize(("args", "message"), [
    (["--usb", "BUS", "--port", "PORT"], "not allowed with argument"),
    (["--port", "PORT", "--usb-id", "1234:5678"], "--usb-id needs --usb"),
    (["--usb", "BUS", "--usb-id", "12345678"], "expected VVVV:PPPP"),
    ([], "one of the arguments --port --usb is required"),
])
def test_bad_usb_command_lines_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a in ("BUS", "PORT") else a for a in args]
    status, stderr = run_to_exit(*args)
    assert status == 2, stderr
    assert message in stderr
    assert not (tmp_path / "BUS").exists()


def test_a_bus_path_that_is_not_a_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bus").write_text("not a directory")
    status, stderr = run_to_exit("--usb", tmp_path / "bus", "--generate", "1:64K")
    assert status == 2, stderr
    assert "cannot plug into --usb" in stderr


def test_the_backend_shows_only_complete_live_devices(tmp_path: Path) -> None:
    bus = tmp_path / "bus"

    def device(chain: str, port: int, *, record: bool = True, locked: bool = True) -> None:
        path = bus / chain
        path.mkdir(parents=True)
        rec = camera_record(instance="ab" * 16, pid=os.getpid(), port_numbers=(1, port),
                            address=port + 2, id_vendor=VID, id_product=PID, manufacturer="m",
                            product="p", serial=chain)
        fd = os.open(path / "pid", os.O_RDWR | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {'ab' * 16}\n".encode())
        if locked:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
        else:
            os.close(fd)
        if record:
            (path / "device.json").write_text(json.dumps(rec.to_json()))

    held: list[int] = []
    try:
        device("1-1.1", 1)  # a live device: the only one shown
        device("1-1.2", 2, record=False)  # being plugged in: no device.json yet
        device("1-1.3", 3, locked=False)  # its emulator died
        device("1-1.4", 5)  # device.json disagrees with the directory's name
        device("1-1.6", 6)
        (bus / "1-1.6" / "device.json").write_text('{"schema": 1, "instance": 7}')  # malformed
        device("not-a-chain", 7)
        assert [d.serial_number for d in cameras(bus)] == ["1-1.1"]
    finally:
        for fd in held:
            os.close(fd)
    assert cameras(bus) == []  # nothing holds the locks any more
