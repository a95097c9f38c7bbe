"""Which child processes a test started, and that none of them is left when it ends.

A test module that starts processes takes the ``children_before`` fixture (autouse in the
module: ``pytestmark`` or an autouse wrapper) and ends with ``no_children_left()``.
"""

from __future__ import annotations

import time

import psutil
import pytest

_before: set[int] = set()  # child processes that existed when the test started


@pytest.fixture(autouse=True)
def children_before() -> None:
    """What was running before the test (a session-wide broker another test started) is
    not the test's to end."""
    _before.clear()
    _before.update(p.pid for p in psutil.Process().children(recursive=True))


def no_children_left(keep: frozenset[int] = frozenset()) -> None:
    """No process the test started is left, but for ``keep`` (a broker the test did not
    start)."""
    deadline = time.monotonic() + 5
    left: list[psutil.Process] = []
    while time.monotonic() < deadline:
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in keep and p.pid not in _before
                and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes left behind: {left}")
