"""Timeline text of the churn steps: takeover, kick, resubscribe, unsubscribe. Pure.

How this works: ``effects`` calls one function per step with the step's ``StepRecord`` (and,
for an unsubscribe, the worker's later deliveries); each returns the step's own part of its
timeline line. What the worker's lost connection caused (its in-flight tasks re-dispatched,
kept or lost) is added by ``effects`` from the worker's "lost" event, as for any loss.
"""

from __future__ import annotations

from .model import StepRecord


def intruder_text(kind: str, worker: str, rec: StepRecord) -> str:
    """``takeover`` / ``kick``: what the second client with the worker's id found."""
    if rec.session_present is None:
        return "the second client with its id was not accepted"
    if kind == "kick":
        return (f"a client with {worker}'s id connected with Clean Start and left: the broker "
                "closed its connection and discarded its session")
    found = "took over its session" if rec.session_present else "started a new session"
    return (f"a second client with {worker}'s id connected and {found}; the broker closed "
            f"{worker}'s connection")


def resubscribe_text(code: object, qos: int) -> str:
    """``resubscribe``: the SUBACK of a subscription replaced in place."""
    if not isinstance(code, int):
        return "no SUBACK (not connected, or no answer in time)"
    if code >= 0x80:
        return f"refused by the broker (SUBACK 0x{code:02X})"
    return (f"replaced in place at QoS {qos} (granted QoS {code}), still one membership "
            "(MQTT 5.0 3.8.4)")


def unsubscribe_text(rec: StepRecord, finished: list[str]) -> str:
    """``unsubscribe``: confirmed or not, and the tasks it had in flight at the time
    (``finished``: those it still got to acknowledge, MQTT 5.0 3.10.4)."""
    head = "confirmed" if rec.confirmed else "no UNSUBACK in time"
    held = list(dict.fromkeys(rec.in_flight))
    if not held:
        return head
    shown = ", ".join(held[:5]) + (f", … +{len(held) - 5} more" if len(held) > 5 else "")
    return (f"{head}; {len(held)} task(s) in flight at the time ({shown}) stay with the "
            f"worker: deliveries already started are completed (MQTT 5.0 3.10.4), "
            f"{len(finished)} of them finished there")
