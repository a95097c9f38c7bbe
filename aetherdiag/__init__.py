"""aetherdiag: diagnose MQTT shared-subscription load balancing."""

__version__ = "0.1.0"
