"""Suite-wide fixtures: real brokers (never a mocked MQTT)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Mosquitto, find_mosquitto

MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Start brokers on demand: ``factory(acl=..., extra_conf=...)``; all stopped at teardown."""
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("mosquitto not installed: run `make deps` as root", pytrace=False)
    brokers: list[Mosquitto] = []

    def start(*, acl: str | None = None, extra_conf: str = "") -> Mosquitto:
        broker = Mosquitto(
            executable, tmp_path / f"mosquitto-{len(brokers)}", acl=acl, extra_conf=extra_conf
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A plain anonymous broker on a free loopback port; ``stop()``/``start()`` to cut it."""
    return mosquitto_factory()
