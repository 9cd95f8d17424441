"""Big-endian field readers and writers shared by the message codecs."""

from __future__ import annotations

import struct

from .errors import ErrorCode, RemoteProtocolError

__all__ = ["Reader", "Writer"]

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """Reads fields from one payload; any short read or leftover byte is a remote error."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def _need(self, n: int) -> int:
        pos = self._pos
        if pos + n > len(self._data):
            raise RemoteProtocolError(f"{self._what}: payload too short", ErrorCode.MALFORMED)
        self._pos = pos + n
        return pos

    def u8(self) -> int:
        return int(_U8.unpack_from(self._data, self._need(1))[0])

    def u16(self) -> int:
        return int(_U16.unpack_from(self._data, self._need(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack_from(self._data, self._need(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack_from(self._data, self._need(8))[0])

    def boolean(self) -> bool:
        value = self.u8()
        if value > 1:
            raise RemoteProtocolError(f"{self._what}: boolean byte is {value}", ErrorCode.MALFORMED)
        return value == 1

    def raw(self, n: int) -> bytes:
        pos = self._need(n)
        return bytes(self._data[pos : pos + n])

    def string(self) -> str:
        n = self.u16()
        try:
            return self.raw(n).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{self._what}: string is not UTF-8") from None

    def rest(self) -> memoryview:
        pos = self._pos
        self._pos = len(self._data)
        return memoryview(self._data)[pos:]

    def end(self) -> None:
        if self._pos != len(self._data):
            raise RemoteProtocolError(
                f"{self._what}: {len(self._data) - self._pos} trailing bytes", ErrorCode.MALFORMED
            )


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(_U8.pack(v))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(_U16.pack(v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(_U32.pack(v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(_U64.pack(v))
        return self

    def boolean(self, v: bool) -> Writer:
        return self.u8(1 if v else 0)

    def raw(self, b: bytes) -> Writer:
        self._parts.append(bytes(b))
        return self

    def string(self, s: str) -> Writer:
        data = s.encode("utf-8")
        return self.u16(len(data)).raw(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
