"""``workers --publishers N``, ``--publisher-reconnect``, ``--keys K`` and ``--expect-order``:
who publishes the tasks, on which keys, and what order the run is held to (docs/ordering.md).

How this works: tasks are dealt to the publishers of each publishing node in turn (task n to
``publisher-((n-1) mod N + 1)``) and, with ``--keys K``, to the keys in turn (task n carries
``key-((n-1) mod K + 1)``). A key is a topic: the task topic template's ``{task_id}`` becomes
``key-3`` (``{n}`` becomes 3) and the task id travels in the payload only, so ``hash_topic``
has something to keep together. ``--publisher-reconnect`` sends each task over a connection of
its own, with a fresh client id (``harness.fleet.publish_fresh`` says why). The ordering check
joins the report when one of these options is given (or the ``reorder`` fault); what it judges comes
from ``analysis.ordering.promise``. Bad combinations are an ``UsageError`` (exit 2, one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..analysis.ordering import promise
from ..analysis.report import Expectations, OrderScope
from ..exitcodes import UsageError
from ..wire.layout import Layout

MAX_PUBLISHERS = 1000



@dataclass(frozen=True, kw_only=True)
class Publishing:
    """The publishing options of one ``workers`` run."""

    publishers: int = 1
    reconnect: bool = False
    keys: int = 0  # 0: no keys, every task on a topic of its own
    expect_order: bool = False
    asked: bool = False  # an option about publishers or order was given: list the check

    def publisher_of(self, n: int) -> int:
        """The publisher (1-based, per node) of task ``n`` (1-based)."""
        return (n - 1) % self.publishers + 1

    def key_of(self, n: int) -> str:
        return f"key-{(n - 1) % self.keys + 1}" if self.keys else ""

    def topic(self, layout: Layout, task_id: str, n: int) -> str:
        """Task ``n``'s topic: its own, or its key's with ``--keys``."""
        if not self.keys:
            return layout.topic(task_id, n)
        k = (n - 1) % self.keys + 1
        return layout.topic(f"key-{k}", k)

    def expectations(self, base: Expectations, strategy: str | None, faults: Sequence[str],
                     plain: bool) -> Expectations:
        """``base`` with the ordering check's fields (``strategy`` None: a real broker's,
        unknown)."""
        scope: OrderScope
        if plain and not self.expect_order:
            scope, basis = "none", "--plain: every worker gets every task, no strategy applies"
        else:
            scope, basis = promise(strategy, expect_order=self.expect_order, keys=self.keys,
                                   fresh_ids=self.reconnect)
        return replace(base, order=scope, order_basis=basis,
                       order_check=self.asked or "reorder" in faults)

    def context(self) -> tuple[tuple[str, str], ...]:
        """The report's setup lines about publishing (none for the default)."""
        rows: list[tuple[str, str]] = []
        if self.publishers > 1 or self.reconnect:
            rows.append(("publishers", f"{self.publishers} per publishing node" + (
                ", a fresh connection and client id per task" if self.reconnect else "")))
        if self.keys:
            rows.append(("keys", f"{self.keys} (task n on key-((n-1) mod {self.keys})+1, "
                                 "one topic per key)"))
        if self.expect_order:
            rows.append(("expect order", "each worker gets each publisher's tasks in the order "
                                         "sent"))
        return tuple(rows)

    def plan(self) -> dict[str, Any]:
        """What the record's plan says about publishing (nothing for the default)."""
        if not self.asked:
            return {}
        return {"publishers": self.publishers, "publisher_reconnect": self.reconnect,
                "keys": self.keys or None, "expect_order": self.expect_order}


def publishing(publishers: int | None, reconnect: bool, keys: int | None, expect_order: bool,
               *, exec_command: str | None, profile: str) -> Publishing:
    """The options checked: ``UsageError`` for combinations that cannot work."""
    given = [flag for flag, on in (("--publishers", publishers is not None),
                                   ("--publisher-reconnect", reconnect),
                                   ("--keys", keys is not None),
                                   ("--expect-order", expect_order)) if on]
    if given and exec_command is not None:
        raise UsageError(f"{', '.join(given)} configure the built-in publishers and workers (the "
                         "ordering check reads what they record); they cannot be used with --exec")
    if keys is not None and profile == "aethermagic":
        raise UsageError("--keys puts several tasks on one topic, but an AetherMagic task topic "
                         "names one task ({tid}); use --profile generic")
    return Publishing(publishers=publishers or 1, reconnect=reconnect, keys=keys or 0,
                      expect_order=expect_order, asked=bool(given))
