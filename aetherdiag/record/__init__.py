"""Run records: a run written as JSON Lines (``workers --record``), read back, and the shard
records of one run merged, so a run is judged and rendered later (``aetherdiag report``).

- ``model``: the header, a read recording, ``RecordError``;
- ``write``: ``write_record`` (header, one line per item, end line);
- ``read``: ``read_record`` with ``FILE:LINE`` errors;
- ``rebuild``: ``merge`` (shards -> one recording; ``workers.judge_record`` judges it).
"""

from __future__ import annotations

from .model import SCHEMA, Failure, RecordError, Recording, RunHeader, Shard
from .read import is_record, read_record
from .rebuild import merge
from .write import write_record

__all__ = ["SCHEMA", "Failure", "RecordError", "Recording", "RunHeader", "Shard", "is_record",
           "merge", "read_record", "write_record"]
