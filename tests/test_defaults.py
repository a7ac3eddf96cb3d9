"""Each shared default has one home (tritonllm/defaults.py): no other module of the package
defines a default port or the default workload in code (docstrings may mention them), and the
Makefile passes ports only when asked."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tritonllm import defaults

PACKAGE = Path(defaults.__file__).parent
PORTS = {defaults.HTTP_PORT, defaults.GRPC_PORT, defaults.METRICS_PORT, defaults.OPENAI_PORT}


def port_numbers(tree: ast.AST):
    """Integer constants given to a name or keyword that says "port"."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [getattr(t, "id", getattr(t, "attr", "")) for t in targets]
            value = node.value
        elif isinstance(node, ast.keyword):
            names, value = [node.arg or ""], node.value
        else:
            continue
        if any("port" in name.lower() for name in names) and isinstance(value, ast.Constant):
            yield value


def code_constants(tree: ast.AST):
    """Every constant in code, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            yield node


def names_a_default(value) -> bool:
    if isinstance(value, str):
        return value == defaults.DEFAULT_WORKLOAD or any(
            re.search(rf":{port}\b", value) for port in PORTS)
    return False


def test_ports_and_the_workload_are_defined_once():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(defaults.__file__):
            continue
        tree = ast.parse(path.read_text())
        found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
                  for node in code_constants(tree) if names_a_default(node.value)]
        found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
                  for node in port_numbers(tree) if node.value in PORTS]
    assert found == []


def test_the_makefile_defines_no_port():
    makefile = (PACKAGE.parent / "Makefile").read_text()
    for port in PORTS:
        assert not re.search(rf"\b{port}\b", makefile), port
