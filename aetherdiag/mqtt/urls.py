"""How an MQTT broker address is written in a URL (``mqtt://[::1]:1883``)."""

from __future__ import annotations


def host_for_url(host: str) -> str:
    """``host`` as a URL writes it: IPv6 addresses in brackets (``[::1]``), a zone's ``%`` as
    ``%25``; names and IPv4 addresses unchanged."""
    if ":" in host and not host.startswith("["):
        return "[" + host.replace("%", "%25") + "]"
    return host
