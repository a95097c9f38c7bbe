"""The aetherdiag MQTT broker emulator (see broker.py for how it works).

Layout, sans-IO first: ``packets`` (the packet dataclasses and constants), ``codec`` (bytes to
packets, re-exporting ``packets`` and ``encoding``), ``topics`` (filters and matching),
``session`` (records), ``sharing`` (share groups, strategies, faults), ``state`` (what the
broker's parts share), ``routing`` (subscription index, delivery), ``lifecycle`` (sessions
from CONNECT to expiry), ``broker`` (the facade); ``server`` is the asyncio front end.
"""

from .broker import Broker
from .server import Emulator, EmulatorServer
from .session import Limits, Stats
from .sharing import FAULTS, STRATEGIES

__all__ = ["FAULTS", "STRATEGIES", "Broker", "Emulator", "EmulatorServer", "Limits", "Stats"]
