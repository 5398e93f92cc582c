"""henderson's subpackages import each other without cycles (issue 15).

(a) The graph between subpackages is built from the AST of every module, counting every
import, including those inside functions (a function-level import is still a dependency:
it runs, and it ties the two packages together). Nodes are the subpackages
(``henderson.reml``), the top-level modules (``henderson.api``) and the package itself
(``henderson``, i.e. ``henderson/__init__.py``). The layering is docs/architecture.md.
(b) Every module imports in a fresh interpreter, so no import order hides a cycle that
only fails at run time.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import henderson

pytestmark = pytest.mark.slow  # imports every module in a fresh interpreter

ROOT = Path(henderson.__file__).resolve().parent  # src/henderson


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _node(module: str) -> str:
    """henderson.reml.optimize → henderson.reml; henderson.api → henderson.api."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path, module: str) -> set[str]:
    """Every henderson module named by an import anywhere in the file (absolute names)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            # `from . import x` may name a submodule: count both the package and package.x
            out.add(target)
            out.update(f"{target}.{a.name}" for a in n.names)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return {m for m in out if m == "henderson" or m.startswith("henderson.")}


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Edges between nodes, and for each edge one witness ("module imports module")."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    witness: dict[tuple[str, str], str] = {}
    for module, path in files.items():
        for target in _imports(path, module):
            if target not in files:  # `from .x import name` also yields x.name: not a module
                continue
            a, b = _node(module), _node(target)
            if a != b:
                graph.setdefault(a, set()).add(b)
                witness.setdefault((a, b), f"{module} imports {target}")
    return graph, witness


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a closed path [a, b, ..., a], or None (iterative DFS, three colours)."""
    colour = {}
    for start in sorted(graph):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_graph_sees_function_level_imports():
    # solvers.spectral imports the tridiagonal kernels at module level and
    # relationships.genomic dispatches to genomic_dask inside a function: both must show.
    graph, witness = import_graph()
    assert "henderson.linalg" in graph["henderson.solvers"]
    assert "henderson.distributed" in graph["henderson.cv"]  # cv.evaluate, inside a function


def test_no_import_cycle_between_subpackages():
    graph, witness = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = "\n".join(f"  {witness[(a, b)]}" for a, b in zip(cycle, cycle[1:]))
        raise AssertionError(f"import cycle {' → '.join(cycle)}:\n{steps}")


def test_every_module_imports_in_a_fresh_interpreter():
    modules = sorted(m for m in (_module_name(p) for p in ROOT.rglob("*.py")))
    code = (
        "import importlib, sys, traceback\n"
        "bad = []\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception:\n"
        "        bad.append(m + ': ' + traceback.format_exc(limit=3))\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"modules that fail to import:\n{r.stdout}\n{r.stderr[-3000:]}"
