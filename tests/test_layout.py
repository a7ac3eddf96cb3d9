"""The layout keeps its promises: no import cycle between tritonllm's packages (lazy imports
inside functions included) and no module past MAX_LINES."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tritonllm"
MAX_LINES = 450


def _node(module: str) -> str:
    """tritonllm.engine.runner -> tritonllm.engine; tritonllm.contract stays itself."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    """Package -> the other packages (or top-level modules) its modules import."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _node(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = ([f"{node.module}.{alias.name}" for alias in node.names]
                           if node.module == "tritonllm" else [node.module])
            else:
                continue
            edges[source] |= {_node(t) for t in targets
                              if t.startswith("tritonllm.") and _node(t) != source}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import path that leads back to where it started (depth-first)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    for start in sorted(edges):
        visit(start, [start])
    return found


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_packages():
    graph = import_graph()
    assert "tritonllm.engine" in graph["tritonllm.models"]  # the graph is really read
    assert cycles(graph) == []


def test_no_module_is_too_long():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
