"""The engine's modules import in one direction: the config layer is the ground floor, and no
group of modules imports each other in a circle (a circle of 31 modules once tied the config
layer to the loop, the actors and `opctl test`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what the config layer may build on: nothing that knows about observing, acting, labs or tests
GROUND = (
    "engine.config", "engine.errors", "engine.durations", "engine.expr", "engine._expr_fast", "engine.redis_commands",
    "engine.templates", "engine.redact",
)  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "engine").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Engine modules `name` imports at run time (anywhere in the file, but not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in (name, "engine"):
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: runtime_imports(name, path, set(found)) for name, path in found.items()}


def test_the_config_layer_builds_only_on_the_ground_floor() -> None:
    for name, imports in graph().items():
        if name.startswith("engine.config"):
            above = sorted(i for i in imports if not i.startswith(GROUND))
            assert above == [], f"{name} imports {above}: the config layer must not know about them"


def test_no_import_circles() -> None:
    edges = graph()
    # a package's __init__ re-exporting its own submodules is not a circle between layers
    for name, imports in edges.items():
        imports.difference_update({i for i in imports if i.startswith(name + ".")})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    assert circles == []
