"""The evaluation package's modules import each other without a cycle (datasets.py and hub.py used
to import each other, one of them from inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import lfm_colbert.eval

PKG = Path(lfm_colbert.eval.__file__).parent


def _imports(path: Path) -> set[str]:
    """Sibling modules of lfm_colbert.eval that `path` imports anywhere (top level or in a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "lfm_colbert.eval":
                out |= {a.name for a in node.names}
            elif node.module.startswith("lfm_colbert.eval."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("lfm_colbert.eval.")}
    return out


def test_no_import_cycle_between_eval_modules():
    graph = {p.stem: _imports(p) & {q.stem for q in PKG.glob("*.py")} for p in PKG.glob("*.py") if p.stem != "__init__"}
    assert "hub" in graph["sources"] and "datasets" in graph["hub"]  # the graph is really read
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path + [n])}"
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
