"""``steps:`` of a scenario -> ``Step`` values, checked in order against the workers' state.

How this works: ``StepReader`` walks the list once. Each item is a one-key mapping
(``- drop: worker-2``) or a bare word (``- settle``). It tracks which workers are connected
and which filters each holds, so that "drop a worker that already left", "unsubscribe from a
filter it never held" and "publish a task id twice" fail at the step that is wrong, before
anything runs. ``count:`` numbering continues from the previous ``count:`` step by default.
What the steps refer to (workers, their groups, the layout, the file's defaults) comes in as
one ``StepContext`` value, read before the steps; the node reading is ``yaml_nodes``'.
``node_down N`` / ``node_up N`` (an emulated cluster) are tracked too: a node's workers are
disconnected by its ``node_down``, cannot ``reconnect`` until its ``node_up``, and the node the
publisher connects to (``publish_to``) cannot go down.
Sizes are bounded before any id is built: ``MAX_COUNT`` per ``count:``, ``MAX_TASK_LIST`` ids
per explicit ``tasks:`` list, ``MAX_TASKS`` in the whole file; id and topic templates may only
substitute their documented placeholders (``template_problem``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import TypedDict

from yaml.nodes import MappingNode, Node, ScalarNode

from ..emulator.topics import valid_topic_name
from ..harness.model import TaskSpec, WorkerSpec
from ..wire.layout import Layout, template_problem
from .model import (
    Disconnect,
    Drop,
    Kick,
    NodeDown,
    NodeUp,
    Publish,
    Reconnect,
    Resubscribe,
    Settle,
    Slow,
    Step,
    Subscribe,
    Takeover,
    Unsubscribe,
    Wait,
)
from .yaml_nodes import Fields, NodeReader, placeholder_problem, suggest

STEP_KINDS = ("publish", "wait", "disconnect", "drop", "reconnect", "subscribe", "unsubscribe",
              "resubscribe", "takeover", "kick", "slow", "settle", "node_down", "node_up")
PUBLISH_KEYS = ("tasks", "count", "id_pattern", "start", "qos", "retain", "rate", "topic",
                "to_share_topic", "node")
DEFAULT_QUIET_S = 0.3
MAX_COUNT = 1_000_000  # tasks per publish step (the plan holds every TaskSpec)
MAX_TASKS = 1_000_000  # tasks in the whole file, every publish step together
MAX_TASK_LIST = 100_000  # ids in one explicit `tasks:` list (use count + id_pattern for more)
MAX_START = 10**15  # first number of a `count:` step
MAX_SECONDS = 86_400.0  # wait and settle bounds: one day
MAX_WORK_MS = MAX_SECONDS * 1000
MAX_QUIET_S = 3600.0
MAX_RATE = 1_000_000.0  # tasks per second


class _At(TypedDict):
    """Where a step is; unpacked into every Step constructor."""

    index: int
    line: int
    column: int


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """What the steps refer to, as read from the rest of the file before them."""

    workers: Mapping[str, WorkerSpec]
    groups: Mapping[str, str]  # worker -> the share name `shared` means for it
    replica_groups: Mapping[str, tuple[str, ...]]  # replica group name -> its workers
    layout: Layout
    qos: int  # the file's default QoS
    timeout_s: float  # the file's timeout (a settle's default bound)
    nodes: int = 1  # the emulated cluster's node count
    publish_to: int = 1  # the publisher's node


class StepReader(NodeReader):
    """``steps:`` in order, tracking which workers are connected and what they hold."""

    def __init__(self, filename: str, known: StepContext) -> None:
        super().__init__(filename)
        self.known = known
        self.connected = dict.fromkeys(known.workers, True)
        self.left_at: dict[str, str] = {}  # worker -> the step that last changed its connection
        self.holds = {name: list(w.subscriptions) for name, w in known.workers.items()}
        self.published: dict[str, str] = {}  # task id -> the step that published it
        self.next_n = 1  # where the next `count:` numbering starts by default
        self.total = 0  # tasks of every publish step so far (bounded by MAX_TASKS)
        self.down: dict[int, str] = {}  # node -> the step that took it down
        self.downs: list[tuple[int, Node]] = []  # every node_down: (node, its value)
        self.publish_on: dict[int, str] = {}  # node -> the first step publishing on it

    def steps(self, node: Node) -> tuple[Step, ...]:
        out = [self.step(item, i) for i, item in enumerate(self.sequence(node, "steps"), 1)]
        if not any(isinstance(s, Publish) for s in out):
            self.fail(node, "steps: no publish step, so there is nothing to deliver")
        for down, value in self.downs:  # a publisher stays connected from start to end
            if down in self.publish_on:
                self.fail(value, f"node_down: node {down} is where tasks are published "
                          f"({self.publish_on[down]}); its publisher must stay connected")
        return tuple(out)

    def worker(self, node: Node, what: str) -> str:
        return self.worker_ref(node, what, self.known.workers, self.known.replica_groups)

    def step(self, item: Node, index: int) -> Step:
        kind, body = self.kind_of(item)
        at = _At(index=index, line=item.start_mark.line + 1, column=item.start_mark.column + 1)
        if kind == "settle":
            return self.settle(body, at)
        if body is None or self.is_null(body):
            self.fail(item, f"{kind}: needs a value (see the scenario format)")
        if kind == "publish":
            return self.publish(body, at)
        if kind == "wait":
            return Wait(seconds=self.number(body, "wait", 0, MAX_SECONDS, above=True), **at)
        if kind in ("disconnect", "drop", "reconnect", "takeover", "kick"):
            return self.connection(kind, body, at)
        if kind in ("node_down", "node_up"):
            return self.node_step(kind, body, at)
        keys = {"subscribe": ("worker", "filter", "qos"), "unsubscribe": ("worker", "filter"),
                "resubscribe": ("worker", "filter", "qos"), "slow": ("worker", "work_ms")}[kind]
        keys_required = keys if kind == "resubscribe" else keys[:2]
        fields = self.mapping(body, kind, keys, required=keys_required)
        worker = self.worker(fields["worker"][1], "worker")
        if kind == "slow":
            work_ms = self.number(fields["work_ms"][1], "work_ms", 0, MAX_WORK_MS)
            return Slow(worker=worker, work_ms=work_ms, **at)
        if not self.connected[worker]:
            self.fail(fields["worker"][1], f"{kind}: {worker} is not connected (since "
                      f"{self.left_at[worker]})")
        filter_node = fields["filter"][1]
        topic_filter = self.subscription(filter_node, self.known.layout, self.known.groups[worker])
        held = self.holds[worker]
        if kind == "unsubscribe":
            if topic_filter not in held:
                self.fail(filter_node, f"unsubscribe: {worker} does not hold {topic_filter!r} at "
                          f"this step (it holds: {', '.join(held) or 'nothing'})")
            held.remove(topic_filter)
            return Unsubscribe(worker=worker, topic_filter=topic_filter, **at)
        if kind == "resubscribe":
            if topic_filter not in held:
                self.fail(filter_node, f"resubscribe: {worker} does not hold {topic_filter!r} "
                          f"at this step (it holds: {', '.join(held) or 'nothing'})")
            return Resubscribe(worker=worker, topic_filter=topic_filter,
                               qos=self.qos_of(fields["qos"][1]), **at)
        if topic_filter in held:
            self.fail(filter_node, f"subscribe: {worker} already holds {topic_filter!r} "
                      "(resubscribe changes its QoS in place)")
        held.append(topic_filter)
        qos = self.qos_of(fields["qos"][1]) if "qos" in fields else self.known.workers[worker].qos
        return Subscribe(worker=worker, topic_filter=topic_filter, qos=qos, **at)

    def kind_of(self, item: Node) -> tuple[str, Node | None]:
        """``- settle`` -> ("settle", None); ``- wait: 1`` -> ("wait", <node 1>)."""
        if isinstance(item, ScalarNode) and isinstance(self.value(item), str):
            kind, body, where = self.value(item), None, item
        elif isinstance(item, MappingNode) and len(item.value) == 1:
            where, body = item.value[0]
            kind = self.string(where, "step")
        elif isinstance(item, MappingNode) and item.value:
            keys = ", ".join(str(self.value(k)) for k, _ in item.value)
            self.fail(item, f"a step has one key, found several ({keys}); indent the options "
                      f"under '{self.value(item.value[0][0])}:'")
        else:
            self.fail(item, f"a step: expected e.g. 'publish: {{count: 9}}' or 'settle', got "
                      f"{self.describe(item)}")
        if kind not in STEP_KINDS:
            self.fail(where, f"unknown step {kind!r}{suggest(kind, STEP_KINDS)}")
        return kind, body

    def connection(self, kind: str, body: Node, at: _At) -> Step:
        worker = self.worker(body, kind)
        online = kind == "reconnect"
        if kind == "kick" and not self.connected[worker]:  # an offline session is kicked too
            self.left_at[worker] = f"step {at['index']} (line {at['line']})"
            return Kick(worker=worker, **at)
        if self.connected[worker] == online:
            state = ("is already connected" if online
                     else f"is not connected (since {self.left_at[worker]})")
            self.fail(body, f"{kind}: {worker} {state}")
        node = self.known.workers[worker].node
        if online and node in self.down:
            self.fail(body, f"reconnect: {worker}'s node {node} is down (since "
                      f"{self.down[node]}); add 'node_up: {node}' before")
        self.connected[worker] = online
        self.left_at[worker] = f"step {at['index']} (line {at['line']})"
        cls = {"disconnect": Disconnect, "drop": Drop, "reconnect": Reconnect,
               "takeover": Takeover, "kick": Kick}[kind]
        return cls(worker=worker, **at)

    def node_step(self, kind: str, body: Node, at: _At) -> Step:
        nodes = self.known.nodes
        node = self.integer(body, kind, 1)
        label = f"step {at['index']} (line {at['line']})"
        if nodes == 1:
            self.fail(body, f"{kind}: the scenario has one node (a cluster needs target: "
                      "emulator: nodes: N)")
        if node > nodes:
            self.fail(body, f"{kind}: node {node} is not in the scenario, which has "
                      f"{nodes_text(nodes)}")
        if kind == "node_up":
            if node not in self.down:
                self.fail(body, f"node_up: node {node} is not down")
            del self.down[node]
            return NodeUp(node=node, **at)
        if node in self.down:
            self.fail(body, f"node_down: node {node} is already down (since {self.down[node]})")
        self.downs.append((node, body))
        self.down[node] = label
        for name, spec in self.known.workers.items():
            if spec.node == node and self.connected[name]:
                self.connected[name] = False
                self.left_at[name] = label
        return NodeDown(node=node, **at)

    def settle(self, body: Node | None, at: _At) -> Settle:
        timeout, quiet = self.known.timeout_s, DEFAULT_QUIET_S
        if body is not None and not self.is_null(body):
            fields = self.mapping(body, "settle", ("timeout", "quiet"))
            if "timeout" in fields:
                timeout = self.number(fields["timeout"][1], "timeout", 0, MAX_SECONDS,
                                      above=True)
            if "quiet" in fields:
                quiet = self.number(fields["quiet"][1], "quiet", 0, MAX_QUIET_S)
        return Settle(timeout_s=timeout, quiet_s=quiet, **at)

    def publish(self, body: Node, at: _At) -> Publish:
        fields = self.mapping(body, "publish", PUBLISH_KEYS)
        if ("tasks" in fields) == ("count" in fields):
            self.fail(body, "publish: give either 'tasks' (a list of ids) or 'count'")
        qos = self.qos_of(fields["qos"][1]) if "qos" in fields else self.known.qos
        retain = self.boolean(fields["retain"][1], "retain") if "retain" in fields else False
        rate = None
        if "rate" in fields and not self.is_null(fields["rate"][1]):
            rate = self.number(fields["rate"][1], "rate", 0, MAX_RATE, above=True)
        topic_of = self.topic_template(fields)
        label = f"step {at['index']} (line {at['line']})"
        node = self.known.publish_to
        if "node" in fields:
            node = self.integer(fields["node"][1], "node", 1)
            if node > self.known.nodes:
                self.fail(fields["node"][1], f"node: node {node} is not in the scenario, which "
                          f"has {nodes_text(self.known.nodes)}")
        self.publish_on.setdefault(node, label)
        tasks = []
        for task_id, n, blame in self.task_ids(body, fields):
            if not task_id or any(ch in task_id for ch in "/+#\x00"):
                self.fail(blame, f"task id {task_id!r}: must be non-empty without / + #")
            if task_id in self.published:
                self.fail(blame, f"task id {task_id!r} is already published by "
                          f"{self.published[task_id]}")
            self.published[task_id] = label
            topic = topic_of(task_id, n)
            if not valid_topic_name(topic):
                self.fail(blame, f"task {task_id!r}: {topic!r} is not a valid topic name")
            tasks.append(TaskSpec(task_id=task_id, topic=topic, qos=qos, retain=retain,
                                  node=node))
        return Publish(tasks=tuple(tasks), rate=rate, **at)

    def task_ids(self, body: Node, fields: Fields) -> list[tuple[str, int, Node]]:
        """``(task id, n, node to blame)`` for ``tasks: [...]`` or ``count`` + ``id_pattern``."""
        if "tasks" in fields:
            for key in ("id_pattern", "start"):
                if key in fields:
                    self.fail(fields[key][0], f"{key} goes with count, not with tasks")
            items = self.sequence(fields["tasks"][1], "tasks")
            if not items:
                self.fail(fields["tasks"][1], "tasks: expected at least one task id")
            if len(items) > MAX_TASK_LIST:
                self.fail(fields["tasks"][1], f"tasks: {len(items):,} ids; a list holds at most "
                          f"{MAX_TASK_LIST:,} (use count and id_pattern for more)")
            self.reserve(len(items), fields["tasks"][1])
            return [(self.string(item, "task id"), n, item) for n, item in enumerate(items, 1)]
        count = self.integer(fields["count"][1], "count", 1, MAX_COUNT)
        start = (self.integer(fields["start"][1], "start", 0, MAX_START) if "start" in fields
                 else self.next_n)
        pattern, blame = "task-{n}", body
        if "id_pattern" in fields:
            blame = fields["id_pattern"][1]
            pattern = self.string(blame, "id_pattern")
        problem = template_problem(pattern, ("n",))
        if problem is not None:
            self.fail(blame, f"id_pattern {pattern!r}: {problem}")
        if not any(field == "n" for _, field, _, _ in Formatter().parse(pattern)):
            self.fail(blame, f"id_pattern {pattern!r}: needs an {{n}} placeholder, "
                      "e.g. 'task-{n}'")
        self.reserve(count, fields["count"][1])
        try:
            ids = [(pattern.format(n=n), n, blame) for n in range(start, start + count)]
        except (KeyError, IndexError, ValueError) as exc:
            self.fail(blame, f"id_pattern {pattern!r}: {placeholder_problem(exc)} (only {{n}} "
                      "is known)")
        self.next_n = start + count
        return ids

    def reserve(self, count: int, blame: Node) -> None:
        """Count ``count`` more tasks against ``MAX_TASKS`` before any of them is built."""
        self.total += count
        if self.total > MAX_TASKS:
            self.fail(blame, f"more than {MAX_TASKS:,} tasks in the file (this step brings "
                      f"the total to {self.total:,})")

    def topic_template(self, fields: Fields) -> Callable[[str, int], str]:
        layout = self.known.layout
        to_share = "to_share_topic" in fields and self.boolean(fields["to_share_topic"][1],
                                                               "to_share_topic")
        if "topic" not in fields:
            if to_share:
                return lambda tid, n: f"$share/{layout.group}/{layout.topic(tid, n)}"
            return layout.topic
        if "to_share_topic" in fields:
            self.fail(fields["to_share_topic"][0], "give either topic or to_share_topic")
        node = fields["topic"][1]
        text = self.string(node, "topic")
        problem = template_problem(text, ("task_id", "n"))
        if problem is not None:
            self.fail(node, f"topic {text!r}: {problem}")
        try:
            text.format(task_id="x", n=0)
        except (KeyError, IndexError, ValueError) as exc:
            self.fail(node, f"topic {text!r}: {placeholder_problem(exc)} "
                      "(use {task_id} or {n})")
        if not valid_topic_name(text.format(task_id="x", n=0)):
            self.fail(node, f"topic {text!r}: not a valid topic name (no '+' or '#' in a topic)")
        return lambda tid, n: text.format(task_id=tid, n=n)


def nodes_text(nodes: int) -> str:
    """``nodes 1..3``, or what one node means."""
    if nodes > 1:
        return f"nodes 1..{nodes}"
    return "one node (a cluster needs target: emulator: nodes: N)"
