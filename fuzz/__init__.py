"""Fuzz harnesses for the wire protocol: the frame decoder, every message decoder, the signed
layouts and the DOCK connection. ``python -m fuzz`` runs them (see fuzz/README.md)."""
