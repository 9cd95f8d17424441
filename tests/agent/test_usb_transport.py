"""UsbTransport on the simulated bus: a session's chunks through it, reads into one buffer,
timeouts, and a vanished device."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import usb.core

from agent.channel import Channel
from agent.transports.base import TransportClosed
from agent.transports.usb import UsbTransport, load_backend
from firmware_protocol import messages as m
from firmware_protocol.connection import SUPPORTED_VERSIONS, Connection, Role
from tests.camsim.camsim_process import running_usb

CHUNK = 1 << 20


def only_device(bus: Path) -> Any:
    devices = list(usb.core.find(find_all=True, backend=load_backend(f"camsim:{bus}"),
                                 idVendor=0x1D6B, idProduct=0x0104))
    assert len(devices) == 1
    return devices[0]


class HashingSink:
    def __init__(self) -> None:
        self.hasher = hashlib.sha256()

    def begin(self, header: m.ChunkHeader) -> None:
        self.hasher = hashlib.sha256()

    def data(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)

    def reset(self) -> None:
        self.hasher = hashlib.sha256()


def test_chunks_arrive_whole_through_one_reused_read_buffer(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:3M", "--chunk-size", str(CHUNK),
                     "--max-payload", str(CHUNK + 64)):
        transport = UsbTransport(only_device(bus))
        read = transport.read
        buffers: set[int] = set()

        def recording_read(max_bytes: int, timeout: float) -> bytes:
            data = read(max_bytes, timeout)
            if data:
                assert isinstance(data, memoryview)
                buffers.add(id(data.obj))
            return data

        transport.read = recording_read  # type: ignore[method-assign]
        try:
            channel = Channel(transport, Connection(Role.DOCK, max_payload=CHUNK + 4),
                              timeout_s=10)
            channel.request(m.Hello(SUPPORTED_VERSIONS, CHUNK + 4), m.Identity)
            channel.request(m.AuthChallenge(os.urandom(32)), m.AuthResponse)
            listing = channel.request(m.ListRecordings(0, 10), m.RecordingList)
            info = listing.entries[0]
            for index in range(info.chunk_count):
                sink = HashingSink()
                header = channel.read_chunk(info.recording_id, index, sink)
                assert sink.hasher.digest() == header.info.sha256
        finally:
            transport.close()
    assert len(buffers) == 1  # every read landed in the same preallocated buffer


def test_nothing_within_the_timeout_reads_empty_and_a_gone_device_closes(tmp_path: Path
                                                                         ) -> None:
    bus = tmp_path / "bus"
    with running_usb(bus, "--generate", "1:64K") as cam:
        transport = UsbTransport(only_device(bus))
        try:
            assert transport.read(1 << 20, 0.05) == b""
            assert transport.read(100, 0.05) == b""  # a smaller buffer for a smaller ask
            cam.stop()
            with pytest.raises(TransportClosed):
                transport.read(1 << 20, 1.0)
        finally:
            transport.close()
