"""Worked examples for docs/protocol.md, generated from the code.

``python -m tests.protocol.doc_examples --write`` rewrites the example blocks in the doc;
``tests/protocol/test_protocol_doc.py`` fails when the doc and the code disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from firmware_protocol import messages as m
from firmware_protocol.frames import encode_frame
from firmware_protocol.signing import auth_message, public_key_raw
from tests.protocol.helpers import CAMERA_KEY, CAMERA_UID, make_recording

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCK = re.compile(r"<!-- example: (?P<name>[a-z_]+) -->\n```\n(?P<body>.*?)```\n", re.S)


def hexdump(data: bytes) -> str:
    lines = []
    for pos in range(0, len(data), 16):
        row = data[pos : pos + 16]
        lines.append(f"{pos:04x}  " + " ".join(f"{b:02x}" for b in row))
    return "\n".join(lines) + "\n"


def _frame(msg: m.Message, seq: int) -> bytes:
    return encode_frame(msg.TYPE, seq, msg.encode(), 1 << 20)


def examples() -> dict[str, str]:
    rec = make_recording(b"Body camera footage, 40 bytes long!!....", 32,
                         recording_id=bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"))
    nonce = bytes(range(0x20, 0x40))
    out = {
        "hello": _frame(m.Hello((1,), 262144), 1),
        "identity": _frame(m.Identity(1, 262144, CAMERA_UID, public_key_raw(CAMERA_KEY), "BWC-9",
                                      "1.2.3", "SN0001", "010203", "Zhang San", "410402",
                                      "Zhanhe Justice"), 1),
        "auth_challenge": _frame(m.AuthChallenge(nonce), 2),
        "auth_response": _frame(m.AuthResponse(CAMERA_KEY.sign(auth_message(CAMERA_UID, nonce))),
                                2),
        "read_chunk": _frame(m.ReadChunk(rec.info.recording_id, 1), 7),
        "chunk_header": _frame(rec.headers[1], 7),
        "chunk_data": _frame(m.ChunkData(0, rec.data[32:40]), 7),
        "chunk_message": rec.headers[1].chunk_message,
        "seal_message": rec.seal.seal_message,
        "error": _frame(m.Error(4, m.GetSeal.TYPE, "no such recording"), 9),
    }
    return {name: hexdump(data) for name, data in out.items()}


def render(doc: str) -> str:
    ex = examples()

    def sub(match: re.Match[str]) -> str:
        name = match["name"]
        return f"<!-- example: {name} -->\n```\n{ex[name]}```\n"

    return BLOCK.sub(sub, doc)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(render(DOC.read_text()))
    else:
        for name, text in examples().items():
            print(name)
            print(text)
