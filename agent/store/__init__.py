"""Durable local storage: encrypted footage, keys, journals and small state."""

__all__: list[str] = []
