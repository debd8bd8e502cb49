"""The analysis modules import each other one way, read from their source with ``ast``.

Every import counts: at module level, under ``if TYPE_CHECKING:`` and inside functions (a lazy
import hides a cycle, it does not remove it). The analysis sits above exceptions, config,
stats, bandit, store and routing and below asgi, web and the root modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import modelrouter.analysis

PACKAGE = "modelrouter.analysis"
ROOT = Path(modelrouter.analysis.__file__).parent
MODULES = {(PACKAGE if p.stem == "__init__" else f"{PACKAGE}.{p.stem}"): p
           for p in sorted(ROOT.glob("*.py"))}
ALLOWED = ("modelrouter.exceptions", "modelrouter.config", "modelrouter.stats",
           "modelrouter.bandit", "modelrouter.store", "modelrouter.routing", PACKAGE)


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module, imported names, at module level and executed) of every import statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    runtime_top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in runtime_top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            out.append((node.module or "", [a.name for a in node.names],
                        id(node) in runtime_top))
    return out


def graph() -> dict[str, set[str]]:
    """Which analysis modules each analysis module imports (the package counts as one)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for module, names, _top in imports(path):
            targets = {module} | {f"{module}.{n}" for n in names}
            edges[name] |= {t for t in targets if t in MODULES and t != name}
    return edges


def test_the_analysis_modules_form_a_dag() -> None:
    edges = graph()
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join([*path, m])
        state[m] = "open"
        for n in sorted(edges[m]):
            visit(n, [*path, m])
        state[m] = "done"
        order.append(m)

    for m in sorted(edges):
        visit(m, [])
    # the facade is on top: only the package imports it; data.py is at the bottom
    assert {m for m, e in edges.items() if f"{PACKAGE}.analysis" in e} == {PACKAGE}
    assert edges[f"{PACKAGE}.data"] == set()
    assert len(order) == len(MODULES) >= 15


def test_no_import_points_up_or_takes_a_private_name() -> None:
    for name, path in MODULES.items():
        for module, names, _top in imports(path):
            if module == "modelrouter" or module.startswith("modelrouter."):
                assert module.startswith(ALLOWED), f"{name} imports {module} (a higher layer)"
                if module == PACKAGE:
                    assert name == PACKAGE, f"{name} imports the package; import the module"
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{name} imports private {private} from {module}"


def test_scipy_is_imported_only_when_a_statistic_is_computed() -> None:
    for name, path in MODULES.items():
        for module, _names, top in imports(path):
            if top:
                assert module.split(".")[0] != "scipy", f"{name} imports {module} at load"
