"""The aetherdiag MQTT broker emulator (see broker.py for how it works).

Layout, sans-IO first: ``packets`` (the packet dataclasses and constants), ``codec`` (bytes to
packets, re-exporting ``packets`` and ``encoding``), ``topics`` (filters and matching),
``session`` (records and read-only views), ``journal`` (the optional record of what was sent
to subscribers), ``sharing`` (share groups, strategies, faults), ``state`` (what the
broker's parts share), ``routing`` (subscription index, delivery), ``lifecycle`` (sessions
from CONNECT to expiry), ``broker`` (the facade); ``server`` is the asyncio front end;
``announce`` is the line format ``aetherdiag emulator serve --machine`` prints.

The names below load lazily (a module ``__getattr__``): importing ``aetherdiag.emulator.topics``
or ``.sharing`` must not pull in the broker, asyncio or the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import Broker
    from .journal import Journal, SentMessage
    from .server import Emulator, EmulatorServer
    from .session import ClientView, Limits, Stats, SubscriptionView
    from .sharing import FAULTS, STRATEGIES

__all__ = [
    "FAULTS", "STRATEGIES", "Broker", "ClientView", "Emulator", "EmulatorServer", "Journal",
    "Limits", "SentMessage", "Stats", "SubscriptionView",
]

# public name -> the module (of this package) that defines it
_HOMES = {
    "Broker": "broker",
    "Emulator": "server",
    "EmulatorServer": "server",
    "Journal": "journal",
    "SentMessage": "journal",
    "ClientView": "session",
    "Limits": "session",
    "Stats": "session",
    "SubscriptionView": "session",
    "FAULTS": "sharing",
    "STRATEGIES": "sharing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
