"""The aetherdiag MQTT broker emulator (see broker.py for how it works)."""

from .broker import Broker
from .server import Emulator, EmulatorServer
from .session import Limits, Stats
from .sharing import FAULTS, STRATEGIES

__all__ = ["FAULTS", "STRATEGIES", "Broker", "Emulator", "EmulatorServer", "Limits", "Stats"]
