"""``aetherdiag watch``: a live pool seen passively, with plain subscriptions only.

- ``events`` (pure): one message -> one ``Event`` (profiles ``aethermagic`` and ``generic``);
- ``tracker`` (pure, sans-IO): per-task state -> findings, with bounded memory;
- ``judge`` (pure): the tracker's ``Summary`` -> an ``analysis`` ``Report``;
- ``record``: events as JSON Lines (``--record``, rolled over by size, reopened on SIGHUP) and
  read back (``--input``);
- ``metrics``: the tracker's running counts as Prometheus metrics (``--metrics-port``);
- ``observe``: the only networked module: one paho client, the loop, the end conditions.
"""
