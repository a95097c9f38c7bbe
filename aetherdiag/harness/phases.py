"""Where a run is: ``connecting``, ``publishing``, ``settling``, ``rendering``.

``reached(phase)`` is called as a run enters each phase: it logs the phase (``--debug``) and
tells every listener registered with ``listening(fn)``. Nothing listens in a normal run; tests
listen to act at a given phase (interrupt the run while it connects, publishes, settles or
renders its report) instead of guessing the moment with a sleep.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Literal

Phase = Literal["connecting", "publishing", "settling", "rendering"]
Listener = Callable[[Phase], None]

log = logging.getLogger("aetherdiag.phase")
_listeners: list[Listener] = []


def reached(phase: Phase) -> None:
    """The run enters ``phase``: log it, and tell the listeners (in the caller's thread)."""
    log.debug("phase: %s", phase)
    for listener in list(_listeners):
        listener(phase)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """``listener(phase)`` is called at every phase a run reaches inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
