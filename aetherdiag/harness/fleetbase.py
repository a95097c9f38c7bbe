"""What the ``Fleet`` mixins (``churn.ChurnSteps``, ``fresh.FreshPublishing``) use of the
fleet: run a function on its loop thread, wait on a condition, connect members. ``Fleet``
provides them; the mixins inherit these declarations so each is written once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .member import Member
from .polling import ProgressCallback

T = TypeVar("T")


class FleetBase:
    """The fleet operations its mixins call (``Fleet`` overrides every one)."""

    connect_timeout: float

    def _run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result."""
        raise NotImplementedError

    def _wait(self, done: Callable[[], bool], timeout: float, *,
              progress: Callable[[], int] | None = None,
              on_progress: ProgressCallback | None = None) -> bool:
        """Poll ``done()`` until true or ``timeout`` passes without progress."""
        raise NotImplementedError

    def _connect(self, members: Sequence[Member], *, ordered: bool = False) -> None:
        """Connect ``members`` and wait for CONNACK and SUBACK, bounded."""
        raise NotImplementedError
