#!/usr/bin/env python3
"""Publish AetherMagic ``perform`` tasks the way an ``AetherTask.perform()`` caller does, and
print every reply seen on the status/complete topics (plus idle/online announcements).

    publish_tasks.py [-n COUNT] [--tid TID ...] [--wait S] [--linger S] [--raw]

Broker and topic from the environment like the workers: MQTT_HOST, MQTT_PORT, AM_UNION, AM_JOB,
AM_TASK, AM_CONTEXT (defaults 127.0.0.1:1883, production/engine/process-data/batch1).

Wire format (aethermagic 0.2.23): MQTT 3.1.1, QoS 0, clean session, not retained;
topic ``{union}/{job}/{task}/{context}/{tid}/perform`` and the body AetherMessage.to_json() gives:
``{"action": "perform", "status": "initialized", "progress": 0, "data": {...}, "host": ...,
"client": ..., "job": "", "workgroup": "", "task": "", "context": "", "tid": ""}``.

Exit status: 0 when every task got exactly one ``complete`` from exactly one client, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def perform_body(data: dict[str, Any], client: str) -> str:
    """The exact JSON an AetherTask.perform() caller publishes (same keys, same order)."""
    return json.dumps({
        "action": "perform", "status": "initialized", "progress": 0, "data": data,
        "host": socket.gethostname(), "client": client,
        "job": "", "workgroup": "", "task": "", "context": "", "tid": "",
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default=env("MQTT_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(env("MQTT_PORT", "1883")))
    ap.add_argument("--union", default=env("AM_UNION", "production"))
    ap.add_argument("--job", default=env("AM_JOB", "engine"))
    ap.add_argument("--task", default=env("AM_TASK", "process-data"))
    ap.add_argument("--context", default=env("AM_CONTEXT", "batch1"))
    ap.add_argument("-n", "--count", type=int, default=6, help="tasks to publish (default 6)")
    ap.add_argument("--tid", action="append", default=[],
                    help="publish this tid (repeatable, may repeat a tid); overrides --count")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between tasks")
    ap.add_argument("--wait", type=float, default=10.0,
                    help="max seconds to wait for every task to complete (default 10)")
    ap.add_argument("--linger", type=float, default=1.5,
                    help="seconds to keep listening after the last complete, for repeats")
    ap.add_argument("--raw", action="store_true", help="print each message's raw JSON too")
    args = ap.parse_args(argv)

    base = f"{args.union}/{args.job}/{args.task}/{args.context}"
    # AetherTask tids are str(uuid1())[:8]; the caller's "client" is a uuid1 as well.
    tids: list[str] = args.tid or [str(uuid.uuid1())[:8] for _ in range(args.count)]
    me = str(uuid.uuid1())
    t0 = time.monotonic()
    lock = threading.Lock()
    subscribed = threading.Event()
    replies: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}  # reply "client" -> data.worker, when a worker says its name

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc != 0:
            print(f"connect refused: {rc}", file=sys.stderr)
            return
        c.subscribe([(f"{base}/+/status", 0), (f"{base}/+/complete", 0),
                     (f"{base}/+/idle", 0), (f"{args.union}/system/online/#", 0)])

    def on_subscribe(_c: Any, _u: Any, _mid: Any, _rc: Any, _p: Any = None) -> None:
        subscribed.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        t = time.monotonic() - t0
        levels = msg.topic.split("/")
        action = levels[-1]
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        client = str(body.get("client", "?"))
        raw_data = body.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        with lock:
            if "worker" in data:
                names[client] = str(data["worker"])
            if action in ("status", "complete") and len(levels) >= 6:
                replies[levels[-2]][action].append(client)
        who = names.get(client, client)
        tid = levels[-2] if len(levels) >= 6 else "-"
        line = (f"+{t:6.3f}s {action:<8} tid={tid} client={client} host={body.get('host')} "
                f"status={body.get('status')} progress={body.get('progress')}")
        if who != client:
            line += f" worker={who}"
        if action in ("online", "idle"):
            line = f"+{t:6.3f}s {action:<8} topic={msg.topic} client={client}"
        print(line, flush=True)
        if args.raw:
            print(f"          {msg.topic} {msg.payload.decode('utf-8', 'replace')}", flush=True)

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=me,
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    try:
        c.connect(args.host, args.port, keepalive=60)
    except OSError as err:
        print(f"cannot connect to {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    c.loop_start()
    try:
        if not subscribed.wait(5):
            print("no SUBACK from the broker within 5 s", file=sys.stderr)
            return 2
        for i, tid in enumerate(tids):
            topic = f"{base}/{tid}/perform"
            print(f"+{time.monotonic() - t0:6.3f}s perform  tid={tid} topic={topic}", flush=True)
            c.publish(topic, perform_body({"n": i}, me), qos=0, retain=False)
            time.sleep(args.interval)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            with lock:
                if all(replies[t]["complete"] for t in tids):
                    break
            time.sleep(0.05)
        time.sleep(args.linger)
    finally:
        c.disconnect()
        c.loop_stop()

    ok = True
    print("\nper task:")
    for tid in dict.fromkeys(tids):
        r = replies.get(tid, {})
        st = [names.get(x, x) for x in r.get("status", [])]
        co = [names.get(x, x) for x in r.get("complete", [])]
        sent = tids.count(tid)
        if not co:
            verdict = "NEVER COMPLETED"
        elif len(set(co)) > 1:
            verdict = "COMPLETED BY SEVERAL CLIENTS"
        elif len(co) > sent:
            verdict = "COMPLETED MORE THAN ONCE"
        elif len(co) < sent:
            verdict = f"COMPLETED {len(co)} OF {sent} TIMES"
        else:
            verdict = "ok"
        ok = ok and verdict == "ok"
        print(f"  {tid}  sent={sent} status_by={st} complete_by={co}  {verdict}")
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in replies.values():
        for x in r.get("status", []):
            per[names.get(x, x)][0] += 1
        for x in r.get("complete", []):
            per[names.get(x, x)][1] += 1
    print("per worker (status replies, complete replies):")
    for who in sorted(per):
        print(f"  {who}: status={per[who][0]} complete={per[who][1]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
