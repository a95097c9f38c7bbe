"""Several shard records of one run -> one recording, workers in global order (judged by
``workers.judge_record``).

How this works: every record must come from the same run (run id), be a shard of it (a
``shard`` in its header), describe the same plan (worker specs, tasks) and together hold
every shard 1..N exactly once; anything else is a ``RecordError`` naming the files. A missing
shard is an error, not a partial verdict: without it, its workers' deliveries are unknown and
every task they took would look missing. The merged result takes what only the publishing
shard (1) knows from it (published tasks, publish failures and refusals, tasks never sent,
the node of each task, the timeout) and concatenates the rest (deliveries, events, SUBACK
answers, unfinished tasks, lost connections, notes). Times are moved onto one clock: each
shard's ``at`` values are shifted by its start (wall clock, ``started_unix``) minus the
earliest shard's, so the timeline lines up to within the hosts' clock offsets. A shard that
failed (e.g. another shard never announced itself) makes the merged run that failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..harness.model import RunResult
from .model import Failure, RecordError, Recording, RunHeader


def merge(recordings: Sequence[Recording]) -> Recording:
    """One recording: the only one given, or the shards of one run merged (module doc)."""
    if len(recordings) == 1 and recordings[0].header.shard is None:
        return recordings[0]
    runs = {r.header.run_id for r in recordings}
    if len(runs) > 1:
        listed = ", ".join(f"{r.name} (run {r.header.run_id})" for r in recordings)
        raise RecordError(f"records of different runs: {listed}; give the records of one run")
    plain = [r.name for r in recordings if r.header.shard is None]
    if plain:
        raise RecordError(f"{plain[0]}: not a shard record (no --shard), so it cannot be "
                          "merged with others; give it alone")
    first = recordings[0]
    lead = first.header.shard
    assert lead is not None
    count = lead.count
    by_index: dict[int, Recording] = {}
    for rec in recordings:
        shard = rec.header.shard
        assert shard is not None
        if shard.count != count:
            raise RecordError(f"{first.name} is shard {lead.index} of {count} but {rec.name} "
                              f"is shard {shard.index} of {shard.count}: not the same "
                              f"sharding of run {rec.header.run_id}")
        if shard.index in by_index:
            raise RecordError(f"{by_index[shard.index].name} and {rec.name} are both shard "
                              f"{shard.index} of {count}")
        if (rec.header.workers, rec.header.tasks) != (first.header.workers, first.header.tasks):
            raise RecordError(f"{first.name} and {rec.name} describe different plans (workers "
                              "or tasks differ): were the shards started with the same options?")
        by_index[shard.index] = rec
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        which = ", ".join(str(i) for i in missing)
        raise RecordError(f"run {first.header.run_id}: shard{'s' if len(missing) > 1 else ''} "
                          f"{which} of {count} missing (got {len(recordings)} record(s)); give "
                          "every shard's record")
    shards = [by_index[i] for i in range(1, count + 1)]
    header = replace(shards[0].header, shard=None, context=(
        *shards[0].header.context, ("shards", f"{count} (run {first.header.run_id})")))
    failed = [r for r in shards if r.failure is not None]
    if failed:
        bad = failed[0]
        assert bad.failure is not None and bad.header.shard is not None
        failure = Failure(message=f"shard {bad.header.shard.index} of {count}: "
                          f"{bad.failure.message}", code=bad.failure.code)
        return Recording(path=None, header=header, result=None, failure=failure)
    return Recording(path=None, header=header, result=_merged(header, shards))


def _merged(header: RunHeader, shards: list[Recording]) -> RunResult:
    results = [r.result for r in shards if r.result is not None]
    assert len(results) == len(shards)
    starts = [r.header.started_unix for r in shards]
    origin = min((s for s in starts if s is not None), default=None)
    shifts = [(s - origin) if s is not None and origin is not None else 0.0 for s in starts]
    pairs = list(zip(results, shifts, strict=True))
    names = [w.name for w in header.workers]
    ran = {n for r in results for n in r.workers}
    return replace(
        results[0],
        workers=tuple(n for n in names if n in ran),
        deliveries=tuple(replace(d, at=d.at + shift) for r, shift in pairs
                         for d in r.deliveries),
        events=tuple(sorted((replace(e, at=e.at + shift) for r, shift in pairs
                             for e in r.events), key=lambda e: e.at)),
        duration_s=round(max(r.duration_s + shift for r, shift in pairs), 3),
        settled=all(r.settled for r in results),
        interrupted=any(r.interrupted for r in results),
        subscribe_results=tuple(s for r in results for s in r.subscribe_results),
        unfinished=tuple(u for r in results for u in r.unfinished),
        connection_lost=tuple(c for r in results for c in r.connection_lost),
        closed_after=tuple(c for r in results for c in r.closed_after),
        mqtt5_refused=next((r.mqtt5_refused for r in results if r.mqtt5_refused), ""),
        notes=tuple(n for r in results for n in r.notes),
        replies=tuple(x for r in results for x in r.replies),
        latency=None,  # analysis builds the histogram from every shard's deliveries
    )
