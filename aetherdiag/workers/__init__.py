"""``aetherdiag workers``, the main feature: options -> plan -> run -> judge.

Modules: ``options`` (frozen option groups, each with ``check()``), ``plan`` (the pure
``plan(options) -> Planned``), ``model`` (``WorkersPlan``, ``Planned``, ``Ran``), ``run`` (the
one entry point; it picks the runner), ``builtin`` (the built-in fleet and one shard's slice of
it), ``shard`` (how shards meet on the broker), ``exec/`` (the team's own worker processes),
``placement`` (which node each worker and task uses), ``publishing`` (publishers, keys, the
order promised), ``records`` (``--record FILE``) and ``judge`` (analyse, then title and setup).
Nothing here imports ``commands``.
"""

from __future__ import annotations

from .model import Planned, Ran, WorkersPlan
from .options import WorkersOptions

# the steps are found by module, ``workers.plan.plan`` ... ``workers.judge.judge``: a face that
# re-exported them would hide the modules of the same name
__all__ = ["Planned", "Ran", "WorkersOptions", "WorkersPlan"]
