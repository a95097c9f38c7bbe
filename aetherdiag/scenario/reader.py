"""Scenario YAML -> a validated ``Scenario`` plan, with errors that name ``file:line:column``.

How this works: ``yaml_nodes.compose`` gives the node tree with a position on every node and
``NodeReader`` reads typed values from it, failing at the node that is wrong (one
``ScenarioError`` line). This module adds the meaning, in dependency order: defaults
(protocol, qos, timeout), target, topic layout, workers (replicas expanded, subscriptions
resolved to full filters), steps (worker names and each worker's connected/subscribed state
checked step by step, task ids unique), then expectations. The whole file is validated before
anything connects anywhere. The plan types live in ``model.py``; the format is
documented in ``docs/scenario-format.md``.

Bounds (each an error at the value that breaks it): files up to ``MAX_FILE_CHARS``, YAML
nesting and size (``yaml_nodes``), durations up to ``MAX_SECONDS``, at most
``MAX_WORKERS`` workers and ``steps.MAX_TASKS`` tasks per file, finite numbers only.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..emulator.session import Limits
from ..emulator.sharing import FAULTS, STRATEGIES
from ..emulator.topics import InvalidFilter, parse_filter
from ..harness.model import EmulatorSettings, WorkerSpec
from ..mqtt.protocol import Protocol, UnknownProtocol, parse_protocol
from ..wire.layout import Layout, LayoutError, aethermagic, generic, template_problem
from .model import (
    Count,
    Expect,
    Publish,
    Scenario,
    ScenarioError,
    WorkerExpect,
)
from .steps import MAX_SECONDS, MAX_WORK_MS, StepContext, StepReader, nodes_text
from .yaml_nodes import Fields, NodeReader, compose, suggest

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario"]

TOP_KEYS = ("name", "description", "target", "layout", "protocol", "qos", "timeout",
            "publish_to", "workers", "steps", "expect")
WORKER_KEYS = ("name", "replicas", "subscriptions", "group", "pool", "qos", "protocol",
               "session", "session_expiry", "work_ms", "work_jitter_ms", "node")
MAX_NODES = 64  # an emulated cluster's nodes (``aetherdiag emulator serve --nodes``)
# ``target: emulator:`` keys for the server policies (``emulator serve`` options)
LIMIT_KEYS = ("receive_maximum", "topic_aliases", "server_keep_alive", "deny_subscribe")
EMULATOR_KEYS = ("strategy", "faults", "group_strategies", "seed", "nodes", *LIMIT_KEYS)
EXPECT_KEYS = ("exit_code", "duplicates", "repeats", "missing", "redispatched",
               "max_imbalance", "allow_redelivery", "workers")
DEFAULT_PERSISTENT_EXPIRY = 3600  # seconds, for `session: persistent` under MQTT 5
MAX_FILE_CHARS = 8 * 1024 * 1024  # a scenario file; far more than any real one needs
MAX_IMBALANCE = 1_000_000.0
MAX_WORKERS = 100_000  # in one file, replicas included
MAX_SEED = 2**63 - 1
MAX_FIGURE = 10**12  # expected counts (duplicates, missing, ...)
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_T = TypeVar("_T")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate the scenario file at ``path`` (``-``: standard input, named
    ``<stdin>`` in errors)."""
    name = os.fspath(path)
    if name == "-":
        try:
            text = sys.stdin.read(MAX_FILE_CHARS + 1)
        except UnicodeDecodeError:
            raise ScenarioError("<stdin>", 1, 1, "the input is not UTF-8 text") from None
        return parse_scenario(text, "<stdin>")
    try:
        with open(name, encoding="utf-8") as stream:
            text = stream.read(MAX_FILE_CHARS + 1)  # bounded: /dev/zero or a FIFO too
    except OSError as exc:
        raise ScenarioError(name, 1, 1, f"cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ScenarioError(name, 1, 1, "the file is not UTF-8 text") from None
    return parse_scenario(text, name)


def parse_scenario(text: str, filename: str = "<scenario>") -> Scenario:
    """Validate scenario YAML ``text``; errors name ``filename``."""
    if len(text) > MAX_FILE_CHARS:
        raise ScenarioError(filename, 1, 1, f"the file is larger than {MAX_FILE_CHARS:,} "
                            "characters; a scenario is a short description")
    return ScenarioReader(filename).scenario(compose(text, filename))


class ScenarioReader(NodeReader):
    """Everything but the steps; keeps what later sections refer to (workers, layout)."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename)
        self.protocol: Protocol = "5"
        self.qos = 1
        self.timeout = 30.0
        self.layout: Layout = aethermagic()
        self.workers: dict[str, WorkerSpec] = {}
        self.groups: dict[str, str] = {}  # worker -> the share name `shared` means for it
        self.defined_at: dict[str, int] = {}  # worker -> line
        self.replica_groups: dict[str, tuple[str, ...]] = {}
        self.nodes = 1  # the emulated cluster's node count (target: emulator: nodes)

    def scenario(self, root: Node) -> Scenario:
        top = self.mapping(root, "the scenario", TOP_KEYS, required=("name", "workers", "steps"))
        name = self.string(top["name"][1], "name")
        description = ""
        if "description" in top:
            description = self.string(top["description"][1], "description", empty=True).strip()
        if "protocol" in top:
            self.protocol = self.protocol_of(top["protocol"][1])
        if "qos" in top:
            self.qos = self.qos_of(top["qos"][1])
        if "timeout" in top:
            self.timeout = self.number(top["timeout"][1], "timeout", 0, MAX_SECONDS,
                                       above=True)
        broker_url, emulator = None, EmulatorSettings()
        if "target" in top:
            broker_url, emulator = self.target(top["target"][1])
        if "layout" in top:
            self.layout = self.layout_of(top["layout"][1])
        self.nodes = emulator.nodes
        publish_to = 1
        if "publish_to" in top:
            publish_to = self.node_of(top["publish_to"][1], "publish_to")
        self.workers_of(top["workers"][1])
        known = StepContext(workers=dict(self.workers), groups=dict(self.groups),
                            replica_groups=dict(self.replica_groups), layout=self.layout,
                            qos=self.qos, timeout_s=self.timeout, nodes=self.nodes,
                            publish_to=publish_to)
        steps = StepReader(self.filename, known).steps(top["steps"][1])
        published = {t.task_id for s in steps if isinstance(s, Publish) for t in s.tasks}
        expect = self.expect(top["expect"][1], published) if "expect" in top else Expect()
        return Scenario(
            name=name, description=description, path=self.filename, broker_url=broker_url,
            emulator=emulator, layout=self.layout, protocol=self.protocol,
            timeout_s=self.timeout, workers=tuple(self.workers.values()), steps=steps,
            expect=expect, publish_to=publish_to,
        )

    # -- small typed values ---------------------------------------------------------------------

    def protocol_of(self, node: Node) -> Protocol:
        raw = self.value(node)
        try:
            if isinstance(raw, bool):
                raise UnknownProtocol(repr(raw))
            return parse_protocol(raw if isinstance(raw, str) else repr(raw))
        except UnknownProtocol:
            self.fail(node, f"protocol: expected \"3.1.1\" or \"5\", got {self.describe(node)}")

    def node_of(self, node: Node, what: str) -> int:
        """A node number, 1 to the emulated cluster's node count."""
        number = self.integer(node, what, 1, MAX_NODES)
        if number > self.nodes:
            self.fail(node, f"{what}: node {number} is not in the scenario, which has "
                      f"{nodes_text(self.nodes)}")
        return number

    # -- target and layout ----------------------------------------------------------------------

    def target(self, node: Node) -> tuple[str | None, EmulatorSettings]:
        fields = self.mapping(node, "target", ("emulator", "broker"))
        if len(fields) != 1:
            self.fail(node, "target: give exactly one of 'emulator' or 'broker'")
        if "broker" in fields:
            url_node = fields["broker"][1]
            url = self.string(url_node, "broker")
            self.check_url(url_node, url)
            return url, EmulatorSettings()
        body = fields["emulator"][1]
        if self.is_null(body):
            return None, EmulatorSettings()
        em = self.mapping(body, "emulator", EMULATOR_KEYS)
        strategy = "round_robin"
        if "strategy" in em:
            strategy = self.choice(em["strategy"][1], "strategy", list(STRATEGIES))
        faults: list[str] = []
        for item in self.sequence(em["faults"][1], "faults") if "faults" in em else []:
            fault = self.choice(item, "fault", list(FAULTS))
            if fault in faults:
                self.fail(item, f"fault {fault!r} is listed twice")
            faults.append(fault)
        groups: tuple[tuple[str, str], ...] = ()
        if "group_strategies" in em:
            pairs = self.pairs(em["group_strategies"][1], "group_strategies")
            groups = tuple((group, self.choice(value, "strategy", list(STRATEGIES)))
                           for group, _, value in pairs)
        seed = None
        if "seed" in em and not self.is_null(em["seed"][1]):
            seed = self.integer(em["seed"][1], "seed", 0, MAX_SEED)
        nodes = self.integer(em["nodes"][1], "nodes", 1, MAX_NODES) if "nodes" in em else 1
        return None, EmulatorSettings(strategy=strategy, faults=tuple(faults),
                                      group_strategies=groups, seed=seed, nodes=nodes,
                                      limits=self.limits(em))

    def limits(self, em: dict[str, tuple[Node, Node]]) -> Limits:
        """The server policies of ``emulator serve`` (--receive-maximum, --topic-aliases,
        --server-keep-alive, --deny-subscribe) as scenario keys."""
        lim = Limits()
        if "receive_maximum" in em:
            lim = replace(lim, receive_maximum=self.integer(
                em["receive_maximum"][1], "receive_maximum", 1, 65535))
        if "topic_aliases" in em:
            lim = replace(lim, topic_aliases=self.boolean(em["topic_aliases"][1], "topic_aliases"))
        if "server_keep_alive" in em and not self.is_null(em["server_keep_alive"][1]):
            lim = replace(lim, server_keep_alive=self.integer(
                em["server_keep_alive"][1], "server_keep_alive", 0, 65535))
        denied: list[str] = []
        for item in (self.sequence(em["deny_subscribe"][1], "deny_subscribe")
                     if "deny_subscribe" in em else []):
            value = self.string(item, "deny_subscribe")
            try:
                parse_filter(value)
            except InvalidFilter as exc:
                self.fail(item, f"deny_subscribe {value!r}: {exc}")
            denied.append(value)
        return replace(lim, deny_subscribe=tuple(denied))

    def check_url(self, node: Node, url: str) -> None:
        from ..harness.target import InvalidTarget, parse_broker_url

        try:
            parse_broker_url(url, protocol=self.protocol, password_env=None)
        except InvalidTarget as exc:
            self.fail(node, f"broker: {exc}")

    def layout_of(self, node: Node) -> Layout:
        kinds = self.mapping(node, "layout", ("aethermagic", "generic"))
        if len(kinds) != 1:
            self.fail(node, "layout: give exactly one of 'aethermagic' or 'generic'")
        kind, (_, body) = next(iter(kinds.items()))
        if kind == "aethermagic" and self.is_null(body):
            return aethermagic()
        if kind == "aethermagic":
            fields = self.mapping(body, kind, ("union", "job", "task", "context", "action",
                                               "workgroup"))
        else:
            fields = self.mapping(body, kind, ("topic", "filter", "group"), required=("topic",))
        args = {key: self.string(value, key) for key, (_, value) in fields.items()}
        if kind == "generic":
            problem = template_problem(args["topic"], ("task_id", "n"))
            if problem is not None:
                self.fail(fields["topic"][1], f"topic {args['topic']!r}: {problem}")
        try:
            if kind == "aethermagic":
                return aethermagic(**args)
            return generic(args["topic"], args.get("filter"), args.get("group", "workers"))
        except LayoutError as exc:  # messages start with the option name: "--union 'a/b': ..."
            message = re.sub(r"(^|\s)--([a-z])", r"\1\2", str(exc))
            label = message.split(" ", 1)[0]
            self.fail(fields[label][1] if label in fields else body, message)

    # -- workers --------------------------------------------------------------------------------

    def workers_of(self, node: Node) -> None:
        items = self.sequence(node, "workers")
        if not items:
            self.fail(node, "workers: expected at least one worker")
        for item in items:
            if isinstance(item, ScalarNode):  # "- worker-1" is short for "- name: worker-1"
                self.add_worker(item, self.worker_spec(self.name_of(item), {}))
                continue
            fields = self.mapping(item, "a worker", WORKER_KEYS, required=("name",))
            name_node = fields["name"][1]
            spec = self.worker_spec(self.name_of(name_node), fields)
            if "replicas" not in fields:
                self.add_worker(name_node, spec)
                continue
            count = self.integer(fields["replicas"][1], "replicas", 1, MAX_WORKERS)
            if len(self.workers) + count > MAX_WORKERS:
                self.fail(fields["replicas"][1], f"replicas: more than {MAX_WORKERS:,} "
                          "workers in the file")
            names = tuple(f"{spec.name}-{i}" for i in range(1, count + 1))
            self.replica_groups[spec.name] = names
            for replica in names:
                self.groups[replica] = self.groups[spec.name]
                self.add_worker(name_node, replace(spec, name=replica))

    def name_of(self, node: Node) -> str:
        name = self.string(node, "worker name")
        if not _NAME_RE.fullmatch(name):
            self.fail(node, f"worker name {name!r}: use letters, digits, '-', '_' and '.'")
        return name

    def add_worker(self, at: Node, spec: WorkerSpec) -> None:
        if len(self.workers) >= MAX_WORKERS:
            self.fail(at, f"workers: more than {MAX_WORKERS:,} workers in the file")
        if spec.name in self.workers:
            self.fail(at, f"duplicate worker name {spec.name!r} (already defined at line "
                      f"{self.defined_at[spec.name]})")
        self.workers[spec.name] = spec
        self.defined_at[spec.name] = at.start_mark.line + 1

    def worker_spec(self, name: str, fields: Fields) -> WorkerSpec:
        def opt(key: str, read: Callable[[Node], _T], default: _T) -> _T:
            return read(fields[key][1]) if key in fields else default

        protocol = opt("protocol", self.protocol_of, self.protocol)
        group = opt("group", lambda n: self.share_name(n, "group"), self.layout.group)
        self.groups[name] = group
        persistent = opt("session", lambda n: self.choice(n, "session", ("clean", "persistent")),
                         "clean") == "persistent"
        expiry = DEFAULT_PERSISTENT_EXPIRY if persistent and protocol == "5" else 0
        if "session_expiry" in fields:
            node = fields["session_expiry"][1]
            if protocol != "5":
                self.fail(node, "session_expiry is an MQTT 5 setting (a persistent 3.1.1 "
                          "session never expires)")
            expiry = self.integer(node, "session_expiry", 0, 0xFFFFFFFF)
            if persistent and expiry == 0:
                self.fail(node, "a persistent session needs session_expiry > 0 under MQTT 5 "
                          "(0 ends the session when the connection ends)")
        subs = [self.layout.subscription(group=group)]
        if "subscriptions" in fields:
            subs = []
            for item in self.sequence(fields["subscriptions"][1], "subscriptions"):
                topic_filter = self.subscription(item, self.layout, group)
                if topic_filter in subs:
                    self.fail(item, f"subscription {topic_filter!r} is listed twice")
                subs.append(topic_filter)
        return WorkerSpec(
            name=name, subscriptions=tuple(subs), protocol=protocol,
            qos=opt("qos", self.qos_of, self.qos), clean_start=not persistent,
            session_expiry=expiry,
            work_ms=opt("work_ms", lambda n: self.number(n, "work_ms", 0, MAX_WORK_MS), 0.0),
            work_jitter_ms=opt("work_jitter_ms",
                               lambda n: self.number(n, "work_jitter_ms", 0, MAX_WORK_MS), 0.0),
            pool=opt("pool", lambda n: self.string(n, "pool"), ""),
            node=opt("node", lambda n: self.node_of(n, "node"), 1),
        )

    # -- expectations ---------------------------------------------------------------------------

    def expect(self, node: Node, published: set[str]) -> Expect:
        fields = self.mapping(node, "expect", EXPECT_KEYS)
        args: dict[str, Any] = {}
        if "exit_code" in fields:
            code_node = fields["exit_code"][1]
            args["exit_code"] = self.integer(code_node, "exit_code", 0, 7)
            if args["exit_code"] == 2:
                self.fail(code_node, "exit_code: 2 is the usage-error code; a scenario that "
                          "runs cannot end with it")
            if args["exit_code"] == 6:
                self.fail(code_node, "exit_code: 6 is what --check-expect returns when "
                          "expectations fail; a run cannot end with it")
        for key in ("duplicates", "repeats", "redispatched"):
            if key in fields:
                args[key] = self.count(fields[key][1], key)
        if "missing" in fields:
            missing = fields["missing"][1]
            if isinstance(missing, SequenceNode):  # the ids themselves
                ids = self.missing_ids(missing, published)
                args["missing_tasks"], args["missing"] = ids, Count(min=len(ids), max=len(ids))
            else:
                args["missing"] = self.count(missing, "missing")
        if "max_imbalance" in fields:
            args["max_imbalance"] = self.number(fields["max_imbalance"][1], "max_imbalance",
                                                1.0, MAX_IMBALANCE)
        if "allow_redelivery" in fields:
            args["allow_redelivery"] = self.boolean(fields["allow_redelivery"][1],
                                                    "allow_redelivery")
        if "workers" in fields:
            per: list[WorkerExpect] = []
            for _, key_node, value_node in self.pairs(fields["workers"][1], "expect workers"):
                name = self.worker_ref(key_node, "expect workers", self.workers,
                                       self.replica_groups)
                figures = self.mapping(value_node, name, ("tasks", "received", "repeats"))
                counts = {k: self.count(v, k) for k, (_, v) in figures.items()}
                per.append(WorkerExpect(name=name, tasks=counts.get("tasks"),
                                        received=counts.get("received"),
                                        repeats=counts.get("repeats")))
            args["workers"] = tuple(per)
        return Expect(**args)

    def missing_ids(self, node: SequenceNode, published: set[str]) -> tuple[str, ...]:
        ids: list[str] = []
        for item in node.value:
            task = self.string(item, "missing: task id")
            if task not in published:
                self.fail(item, f"missing: task {task!r} is never published"
                          f"{suggest(task, sorted(published))}")
            ids.append(task)
        return tuple(ids)

    def count(self, node: Node, what: str) -> Count:
        """``N`` (exactly) or ``{min: N, max: M}`` (either bound may be left out)."""
        if isinstance(node, MappingNode):
            fields = self.mapping(node, what, ("min", "max"))
            if not fields:
                self.fail(node, f"{what}: give min, max or both")
            lo = self.integer(fields["min"][1], "min", 0, MAX_FIGURE) if "min" in fields else 0
            hi = (self.integer(fields["max"][1], "max", 0, MAX_FIGURE) if "max" in fields
                  else None)
            if hi is not None and hi < lo:
                self.fail(node, f"{what}: min {lo} is above max {hi}")
            return Count(min=lo, max=hi)
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, f"{what}: expected a count or {{min: N, max: M}}, "
                      f"got {self.describe(node)}")
        exact = self.integer(node, what, 0, MAX_FIGURE)
        return Count(min=exact, max=exact)
