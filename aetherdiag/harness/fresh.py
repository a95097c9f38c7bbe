"""Publishing over a fresh connection per task (``workers --publisher-reconnect``).

How this works: ``FreshPublishing`` is the part of ``Fleet`` that sends tasks marked
``fresh_connection`` one at a time, in publish order: for each task it builds a new publisher
client named like the task's publisher (``publisher-2``) with a client id of its own
(``aetherdiag-<run>-publisher-2-c<n>``, n = 1, 2, ... per publisher), connects it, publishes the
one task, waits for the acknowledgement, sends DISCONNECT and hands the spent publisher to
``Publishers.retire`` so what it sent and what failed is collected with everything else.

Why a fresh client id and not the same one again: EMQX keeps the round_robin turn in the
publishing connection's process (``emqx_shared_sub``: ``erlang:get/put``), so every new
connection starts the turn over whichever id it uses: at the first member in EMQX 3.x, at a
random one in later releases. The emulator's ``per-publisher-rr`` fault keys the turn by client
id (the 3.x flavour). A fresh id restarts the turn on both, so the pitfall ``probe`` describes
(many short-lived publishers: the first member gets most tasks) shows on the emulator as on
EMQX. A connection that cannot be opened mid-run ends
the fresh publishing: that task and the ones after it count as not sent, with the reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from .clients import BrokerUnreachable
from .fleetbase import FleetBase
from .member import LIVE
from .model import TaskSpec
from .polling import ProgressCallback
from .publisher import Publisher
from .publishers import Publishers


class FreshPublishing(FleetBase):
    """Mixin for ``Fleet``: tasks sent each over a connection of its own."""

    _pubs: Publishers

    # provided by Fleet
    def client_id(self, name: str) -> str:
        raise NotImplementedError

    def _new_publisher(self, name: str, node: int, client_id: str | None = None) -> Publisher:
        raise NotImplementedError

    def _publish_fresh(self, tasks: Sequence[TaskSpec], rate: float | None, timeout_s: float,
                       on_progress: ProgressCallback | None) -> None:
        """Send ``tasks`` (numbered, in publish order) one per fresh connection, ``rate`` a
        second at most, all within ``timeout_s``; what is not sent by then is given up."""
        pubs = self._pubs
        deadline = time.monotonic() + timeout_s
        gap = 1.0 / rate if rate else 0.0
        connections: Counter[str] = Counter()
        for i, task in enumerate(tasks):
            started = time.monotonic()
            if started >= deadline:
                pubs.given_up += [(t.task_id, f"not sent within {timeout_s:g} s")
                                  for t in tasks[i:]]
                return
            name = pubs.name(task.node, task.publisher)
            connections[name] += 1
            pub = self._new_publisher(name, task.node,
                                      f"{self.client_id(name)}-c{connections[name]}")
            pubs.retire(pub)  # whatever happens, the fleet collects (and closes) it
            try:
                self._connect([pub])
            except BrokerUnreachable as exc:
                pubs.given_up += [(t.task_id, f"not sent: a fresh publisher connection "
                                   f"failed ({exc})") for t in tasks[i:]]
                return
            self._send_one(pub, task, deadline, on_progress)
            if gap and i + 1 < len(tasks):
                pause = started + gap - time.monotonic()
                if pause > 0:
                    self._wait(lambda: False, min(pause, max(0.0, deadline - time.monotonic())))

    def _send_one(self, pub: Publisher, task: TaskSpec, deadline: float,
                  on_progress: ProgressCallback | None) -> None:
        """Publish ``task`` on the connected ``pub``, wait for its acknowledgement (until
        ``deadline``), then close the connection (cut it when DISCONNECT does not end it)."""
        self._run(lambda: pub.enqueue([task], None))
        self._wait(lambda: pub.idle, max(0.0, deadline - time.monotonic()),
                   on_progress=on_progress)
        self._run(pub.disconnect)
        if not self._wait(lambda: pub.state not in LIVE, self.connect_timeout):
            self._run(pub.drop)
