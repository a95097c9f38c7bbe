"""pytest plugin (entry point ``pytest11``): the ``mqtt_emulator`` fixture.

    def test_my_workers(mqtt_emulator):
        client.connect("127.0.0.1", mqtt_emulator.port)

Mark a test with ``@pytest.mark.mqtt_emulator(strategy="random", faults=["redeliver"])`` to
configure the emulator it gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the emulator (asyncio, the server) loads only when a test asks for it
    from .emulator import Emulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mqtt_emulator(**kwargs): options for the mqtt_emulator fixture"
    )


@pytest.fixture
def mqtt_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A fresh aetherdiag broker emulator on a free loopback port, stopped after the test."""
    from .emulator import Emulator

    marker = request.node.get_closest_marker("mqtt_emulator")
    kwargs = dict(marker.kwargs) if marker else {}
    with Emulator(**kwargs) as emulator:
        yield emulator
