"""``aetherdiag probe``: what does this broker really do with shared subscriptions?

fingerprint.py is pure (delivery sequences -> strategy guess); client.py is a small blocking
paho wrapper (clients built and connect errors worded by ``harness.clients``); context.py is
what every step shares (run naming, time budget, clients); share.py is the shared-subscription
run and its pure verdict; dispatch.py, checks.py and inflight.py are the experiments;
runner.py orders them into a ``ProbeReport`` (model.py).
"""

from .model import Check, ProbeReport, ProtocolInfo, Status
from .runner import ProbeOptions, ProbeUnreachable, run_probe

__all__ = ["Check", "ProbeOptions", "ProbeReport", "ProbeUnreachable", "ProtocolInfo",
           "Status", "run_probe"]
