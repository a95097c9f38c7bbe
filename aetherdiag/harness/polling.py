"""Waiting on the fleet from the caller's thread: poll a condition against a deadline.

How this works: the caller's thread never touches a client; it polls counters the loop thread
keeps, with naps that double from 0.5 ms up to 20 ms, and always against a deadline. With a
``progress`` counter the deadline moves whenever it grows (connecting a large fleet takes as
long as it keeps making progress). ``on_progress`` gets the caller's counters about ten times a
second, and once more when the condition holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]  # (published, delivered)
PROGRESS_INTERVAL = 0.1  # seconds between on_progress calls


def poll(
    done: Callable[[], bool], timeout: float, *, check: Callable[[], None],
    counters: Callable[[], tuple[int, int]],
    progress: Callable[[], int] | None = None,
    on_progress: ProgressCallback | None = None,
) -> bool:
    """Poll ``done()`` until true (True) or ``timeout`` passes without progress (False).

    ``check()`` runs first on every round (it raises when the loop thread failed);
    ``counters()`` gives ``on_progress`` its ``(published, delivered)``.
    """
    start = time.monotonic()
    deadline = start + timeout
    last = progress() if progress else 0
    next_report = start
    nap = 0.0005
    while True:
        check()
        now = time.monotonic()
        if on_progress is not None and now >= next_report:
            on_progress(*counters())
            next_report = now + PROGRESS_INTERVAL
        if done():
            if on_progress is not None:
                on_progress(*counters())
            return True
        if progress is not None:
            current = progress()
            if current != last:
                last = current
                deadline = now + timeout
        if now >= deadline:
            return False
        time.sleep(min(nap, deadline - now))
        nap = min(nap * 2, 0.02)
