"""Publishing to the central console: the durable outbox and the MQTT link."""

__all__: list[str] = []
