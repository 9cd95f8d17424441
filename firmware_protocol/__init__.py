"""Camera ↔ dock wire protocol, sans-IO: bytes in, events out (see ``docs/protocol.md``)."""
