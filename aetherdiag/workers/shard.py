"""Sharded runs: the shards of one run (processes on several hosts) coordinated through the
broker under test itself.

How this works: each shard runs a slice of the workers (``slice_of``: contiguous blocks, global
names) and a ``Coordinator``: one more paho client (paho's own network thread) subscribed to
``<prefix>/<run id>/shards/+``. Once its workers are connected and subscribed the shard
announces itself with a retained message on ``.../shards/<I>`` (a random token, its workers,
its host); its will clears that message if the process dies. Every shard waits until all N
have announced themselves; shard 1 then publishes the tasks and, once they are acknowledged
and its own workers have settled, a retained ``.../shards/published`` marker carrying its
token and the task count; the others settle once they see it. A marker counts only with the
token of the shard 1 that announced itself in this run, so a stale marker of an earlier run
with the same id is ignored. Every wait is bounded: a shard that never announces itself is
named (``ShardError``), and so is a shard 1 that goes away or never publishes. At the end each
shard clears its retained messages.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from ..exitcodes import Unreachable, UsageError
from ..harness.clients import describe_connect_error, new_client, release, tls_context
from ..harness.model import BrokerTarget

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PUBLISHED = "published"


class ShardOptionError(UsageError, ValueError):
    """``--shard`` or ``--run-id`` as given cannot work (exit 2)."""


class ShardError(Unreachable):
    """The shards could not coordinate; ``str()`` is one line naming the shard at fault."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3); ``ValueError`` with the reason otherwise."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text)
    if match is None:
        raise ShardOptionError(f"--shard {text!r}: expected I/N, e.g. 2/3 (shard 2 of 3)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise ShardOptionError(f"--shard {text!r}: I must be 1..N (shard {index} of {count})")
    return index, count


def check_run_id(run_id: str) -> str:
    """A run id every shard can put in topics and client ids, or ``ValueError``."""
    if RUN_ID.fullmatch(run_id) is None:
        raise ShardOptionError(f"--run-id {run_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return run_id


def slice_of(count: int, index: int, shards: int) -> range:
    """The worker numbers (1-based, global) shard ``index`` of ``shards`` runs: contiguous
    blocks, the first ``count % shards`` shards one larger (7 workers, 3 shards: 1-3, 4-5,
    6-7)."""
    size, extra = divmod(count, shards)
    start = (index - 1) * size + min(index - 1, extra) + 1
    return range(start, start + size + (1 if index <= extra else 0))


def _and(items: list[int]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    """This process's place in a sharded run."""

    index: int
    count: int
    run_id: str
    prefix: str = "aetherdiag"

    def topic(self, leaf: str | int) -> str:
        return f"{self.prefix}/{self.run_id}/shards/{leaf}"


class Coordinator:
    """Readiness and the published marker of one shard (see the module doc)."""

    def __init__(self, target: BrokerTarget, spec: ShardSpec, *, connect_timeout: float) -> None:
        self.spec = spec
        self.target = target
        self.token = uuid.uuid4().hex
        self.connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._ready: dict[int, str] = {}  # shard -> token of its standing announcement
        self._seen: set[int] = set()  # shards that announced themselves in this run
        self._published: int | None = None  # shard 1's marker of this run: tasks published
        self._lost: str | None = None
        self._subscribed = False
        self._announced = False
        cid = f"aetherdiag-{spec.run_id}-shard{spec.index}"
        self._client = new_client(target, cid, target.protocol, tls=tls_context(target))
        self._client.will_set(spec.topic(spec.index), b"", qos=1, retain=True)
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._connected = False

    # --- paho's thread ------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        try:
            doc = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        with self._cond:
            if leaf == PUBLISHED:
                # valid only with the token of the shard 1 announced in this run (a stale
                # marker of an earlier run with the same id has another token)
                if (isinstance(doc, dict) and 1 in self._ready
                        and doc.get("token") == self._ready[1]):
                    count = doc.get("published")
                    self._published = count if isinstance(count, int) else 0
            elif leaf.isdigit():
                if isinstance(doc, dict) and isinstance(doc.get("token"), str):
                    self._ready[int(leaf)] = doc["token"]
                    self._seen.add(int(leaf))
                else:
                    self._ready.pop(int(leaf), None)
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any,
                      props: Any) -> None:
        with self._cond:
            self._subscribed = True
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        with self._cond:
            if self._connected:
                self._lost = f"shard {self.spec.index} lost its broker connection ({rc})"
            self._cond.notify_all()

    # --- the caller's thread --------------------------------------------------------------
    def connect(self) -> None:
        """Connect and subscribe to the run's shard topics (``ShardError`` when it cannot)."""
        try:
            self._client.connect(self.target.host, self.target.port, keepalive=30)
        except Exception as exc:  # every connect failure is one line
            reason = describe_connect_error(exc, self.target, self.connect_timeout)
            raise ShardError(f"cannot connect to {self.target.display()}: {reason}") from None
        self._connected = True
        self._client.loop_start()
        self._client.subscribe(self.spec.topic("+"), qos=1)
        if not self._wait(lambda: self._subscribed, self.connect_timeout):
            raise ShardError(f"{self.target.display()} did not answer the subscription to "
                             f"{self.spec.topic('+')} within {self.connect_timeout:g} s")

    def _wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                if self._lost is not None:
                    raise ShardError(self._lost)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def _publish(self, leaf: str | int, doc: dict[str, Any] | None) -> None:
        payload = b"" if doc is None else json.dumps(doc).encode()
        info = self._client.publish(self.spec.topic(leaf), payload, qos=1, retain=True)
        info.wait_for_publish(self.connect_timeout)

    def announce(self, workers: list[str]) -> None:
        """Say this shard is ready (its workers connected and subscribed)."""
        if self.spec.index == 1:  # an earlier run's marker must not be taken for this one's
            self._publish(PUBLISHED, None)
        self._publish(self.spec.index, {"shard": self.spec.index, "of": self.spec.count,
                                        "token": self.token, "workers": workers,
                                        "host": socket.gethostname()})
        self._announced = True

    def wait_ready(self, timeout: float) -> None:
        """Wait until every shard has announced itself (or shard 1's marker shows they did)."""
        n = self.spec.count
        if self._wait(lambda: len(self._seen & set(range(1, n + 1))) == n
                      or self._published is not None, timeout):
            return
        with self._cond:
            absent = [i for i in range(1, n + 1) if i not in self._seen]
        verb = "never announced itself" if len(absent) == 1 else "never announced themselves"
        raise ShardError(f"shard{'s' if len(absent) > 1 else ''} {_and(absent)} of {n} {verb} "
                         f"within {timeout:g} s (--timeout): is every shard started with "
                         f"--run-id {self.spec.run_id} against this broker?")

    def announce_published(self, published: int) -> None:
        """Shard 1: the tasks are out (``published`` of them were handed to the broker)."""
        self._publish(PUBLISHED, {"token": self.token, "published": published})

    def wait_published(self, timeout: float) -> int:
        """Other shards: wait for shard 1's marker; returns how many tasks it published."""
        n = self.spec.count
        if not self._wait(lambda: self._published is not None or 1 not in self._ready,
                          timeout):
            raise ShardError(f"shard 1 of {n} did not publish the tasks within {timeout:g} s "
                             "(--timeout)")
        with self._cond:
            if self._published is None:
                raise ShardError(f"shard 1 of {n} went away before it published the tasks")
            return self._published

    def close(self) -> None:
        """Clear this shard's retained messages and disconnect (bounded, never raises)."""
        try:
            if self._connected and self._lost is None:
                if self._announced:
                    self._publish(self.spec.index, None)
                if self.spec.index == 1 and self._announced:
                    self._publish(PUBLISHED, None)
                self._connected = False
                self._client.disconnect()
        except Exception:  # cleanup is best effort; the run's result stands
            pass
        finally:
            self._connected = False
            release(self._client)
