"""A second client with a worker's client id: the ``takeover`` and ``kick`` steps.

How this works: ``Intruder.connect`` opens one paho client (the target's transport, TLS and
credentials, ``harness.clients.new_client``) with the client id of a live worker, so the
broker takes the session over and closes the worker's connection (MQTT 5: DISCONNECT 0x8E).
For ``takeover`` it keeps the worker's session settings (Clean Start off for a persistent
worker: the session, with what it held, passes to the intruder), never acknowledges anything
and stays until ``close`` (the worker's ``reconnect`` takes the session back in turn: two
processes sharing one id, emqx#1501). For ``kick`` it connects with Clean Start and leaves at
once with Session Expiry 0: the session is discarded, as an administrator's kick would. Its
own paho network thread runs only while it is connected.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..harness.clients import KEEPALIVE, connect_properties, new_client, release, tls_context
from ..harness.model import BrokerTarget


class Intruder:
    """One extra connection with a worker's client id."""

    def __init__(self, target: BrokerTarget, client_id: str, protocol: str, *,
                 clean_start: bool, session_expiry: int) -> None:
        self.protocol = protocol
        self.clean_start = clean_start
        self.session_expiry = session_expiry if protocol == "5" else 0
        self.client = new_client(target, client_id, protocol, tls=tls_context(target),
                                 clean_start=clean_start, manual_ack=True)
        self.target = target
        self.session_present: bool | None = None
        self._answered = threading.Event()
        self.client.on_connect = self._on_connect

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if not rc.is_failure:
            self.session_present = bool(getattr(flags, "session_present", False))
        self._answered.set()

    def connect(self, timeout: float) -> bool:
        """Connect and wait (bounded) for CONNACK; True when the broker accepted it."""
        try:
            if self.protocol == "5":
                self.client.connect(self.target.host, self.target.port, KEEPALIVE,
                                    clean_start=self.clean_start,
                                    properties=connect_properties(self.session_expiry))
            else:
                self.client.connect(self.target.host, self.target.port, KEEPALIVE)
        except (OSError, ValueError):
            return False
        self.client.loop_start()
        self._answered.wait(timeout)
        return self.session_present is not None

    def close(self, *, end_session: bool = False) -> None:
        """Leave (DISCONNECT; ``end_session``: with Session Expiry 0 in MQTT 5)."""
        props = None
        if end_session and self.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        with contextlib.suppress(OSError, ValueError):
            self.client.disconnect(properties=props)
        release(self.client)
