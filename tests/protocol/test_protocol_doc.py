"""docs/protocol.md's worked examples are exactly what the code produces."""

from __future__ import annotations

from tests.protocol.doc_examples import BLOCK, DOC, examples, render


def test_every_example_in_the_doc_matches_the_code() -> None:
    doc = DOC.read_text()
    found = {match["name"]: match["body"] for match in BLOCK.finditer(doc)}
    assert set(found) == set(examples()), "doc and generator list different examples"
    assert render(doc) == doc, "run: python -m tests.protocol.doc_examples --write"


def test_doc_lists_every_message_type() -> None:
    from firmware_protocol.messages import MESSAGE_TYPES

    doc = DOC.read_text()
    for code in MESSAGE_TYPES:
        assert f"| 0x{code:02X} |" in doc, f"message type 0x{code:02X} missing from the doc"
