"""docs/sharding.md: every YAML file it offers for copy and paste (the Kubernetes Indexed Job,
the GitHub Actions workflow) is valid YAML of the right shape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "sharding.md"


def yaml_blocks() -> list[Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [yaml.safe_load(block) for block in blocks]


def test_every_yaml_block_loads() -> None:
    docs = yaml_blocks()
    kinds = [d.get("kind") for d in docs]
    assert kinds == ["PersistentVolumeClaim", "Job", "Job", None]
    shards = docs[1]["spec"]
    assert shards["completionMode"] == "Indexed"
    assert shards["completions"] == shards["parallelism"] == 3
    args = shards["template"]["spec"]["containers"][0]["args"][0]
    assert '--shard "$((JOB_COMPLETION_INDEX + 1))/$SHARDS"' in args
    assert "--run-id" in args and "--record" in args
    workflow = docs[3]
    assert set(workflow["jobs"]) == {"shard", "report"}
    assert workflow["jobs"]["shard"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert workflow["jobs"]["report"]["needs"] == "shard"
    steps = " ".join(str(s.get("run", "")) for s in workflow["jobs"]["report"]["steps"])
    assert "aetherdiag report records/shard-*.jsonl" in steps
