"""Tests for agent.store."""
