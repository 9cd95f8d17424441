"""Tests of the reference camera emulator (camsim)."""
