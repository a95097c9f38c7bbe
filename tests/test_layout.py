"""The package's shape, held to account (docs/architecture.md): every import between its
packages is one the may-import table allows, no import cycle anywhere (``TYPE_CHECKING`` imports
and imports inside functions counted: a cycle only the type checker sees is still one concept
split in two), and at most 8 modules at the top level beside the packages. No line cap: a
module is as long as its concept."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aetherdiag"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_TOP_LEVEL = 8
OPEN_TO_ALL = ("aetherdiag", "aetherdiag.exitcodes")  # the face (__version__), the exit codes


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module ``name`` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def unit(module: str) -> str:
    """The row of the table a module belongs to: ``aetherdiag.harness.fleet`` -> ``harness``,
    ``aetherdiag.cli`` -> ``cli``."""
    return module.split(".")[1] if "." in module else module


def table() -> dict[str, tuple[str, ...] | None]:
    """The may-import column of docs/architecture.md: row -> allowed module prefixes (None:
    everything)."""
    rows: dict[str, tuple[str, ...] | None] = {}
    below = {"cli", "__main__"}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"\| `([\w.]+?)(?:/|\.py)` \|.*\| ([^|]*) \|$", line)
        if match is None:
            continue
        row, allowed = match.groups()
        if allowed.strip() == "everything":
            rows[row] = None
        elif allowed.strip() == "everything below":
            rows[row] = tuple(f"aetherdiag.{m}" for m in modules_below(below | {row}))
        else:
            rows[row] = tuple(f"aetherdiag.{m}" for m in re.findall(r"`([\w.]+)`", allowed))
    return rows


def modules_below(excluded: set[str]) -> set[str]:
    return {unit(m) for m in modules() if m != "aetherdiag"} - excluded


def allowed(target: str, prefixes: tuple[str, ...] | None) -> bool:
    if prefixes is None or target in OPEN_TO_ALL:
        return True
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_every_package_has_a_row_in_the_table() -> None:
    rows = table()
    missing = sorted(modules_below(set()) - set(rows))
    assert not missing, f"docs/architecture.md has no row for {missing}"


def test_every_import_is_one_the_table_allows() -> None:
    rows = table()
    wrong = sorted(f"{name} imports {target}"
                   for name, targets in graph().items() if name != "aetherdiag"
                   for target in targets
                   if unit(target) != unit(name) and not allowed(target, rows[unit(name)]))
    assert not wrong, "\n".join(wrong)


def test_nothing_under_workers_imports_the_commands() -> None:
    wrong = [name for name, targets in graph().items() if unit(name) == "workers"
             if any(unit(t) in ("commands", "cli") for t in targets)]
    assert not wrong, wrong


def test_no_import_cycle() -> None:
    deps = graph()
    # a package face importing its own submodules is how faces work, not a cycle
    for name in deps:
        deps[name] = {m for m in deps[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(deps):
        if node not in state:
            visit(node)


def test_the_checks_see_type_checking_imports(tmp_path: Path) -> None:
    """A cycle hidden behind ``if TYPE_CHECKING:`` is found (the old check skipped them)."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    path = tmp_path / "a.py"
    path.write_text(source)
    assert imports("aetherdiag.x.a", path, {"aetherdiag.x.b"}) == {"aetherdiag.x.b"}


def test_the_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top
