"""The package's import graph, read from the source with ``ast``: no cycle, layers point down.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy
import hides a cycle, it does not remove it. Layers, bottom up (see docs/architecture.md):
exceptions, config, stats, bandit, store, routing, analysis, asgi, web; the root modules
(router, experiment, monitor, cli, demo, testing, loader) sit on top and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "modelrouter"
LAYERS = ["exceptions", "config", "stats", "bandit", "store", "routing", "analysis", "asgi",
          "web"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> dict[str, set[str]]:
    """Modules of the package that ``name`` imports -> the names it takes from them."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            pairs = [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            pairs = [(f"{base}.{a.name}", a.name) for a in node.names]
        else:
            continue
        for target, imported in pairs:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                # a submodule taken by name is not a name imported from the parent
                bare = target.rpartition(".")[2] == imported
                found.setdefault(target, set()).update(() if bare else {imported})
    return found


GRAPH = {m: imports(m) for m in MODULES}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    # the root package's public names load lazily; the graph still sees where they live
    assert "modelrouter.router" in GRAPH["modelrouter"]
    assert "modelrouter.analysis" in GRAPH["modelrouter.router"]  # imported in a method


def test_no_import_cycle() -> None:
    graph = {m: {t for t in ts if not (t.startswith(m + ".") and MODULES[m].name ==
                                       "__init__.py")} for m, ts in GRAPH.items()}
    seen: dict[str, int] = {}  # 1 on the current path, 2 done
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        seen[m] = 1
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                cycle.extend(path[path.index(t):] + [m, t] if t in path else [m, t])
                return True
            if t not in seen and visit(t, path + [m]):
                return True
        seen[m] = 2
        return False

    for m in sorted(graph):
        if m not in seen and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) is not None))
def test_imports_point_down_the_layers(module: str) -> None:
    own = layer(module)
    assert own is not None
    above = sorted(t for t in GRAPH[module] if (lt := layer(t)) is not None and lt > own)
    root = sorted(t for t in GRAPH[module] if layer(t) is None and t != "modelrouter")
    assert not above, f"{module} (layer {LAYERS[own]}) imports {above}"
    assert not root, f"{module} imports root modules {root}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_of_another_module(module: str) -> None:
    private = sorted(f"{t}.{n}" for t, names in GRAPH[module].items() for n in names
                     if n.startswith("_") and not n.startswith("__")
                     # a package may use its own private helper module (config/_checks.py)
                     and not (t.rpartition(".")[0] == module.rpartition(".")[0]
                              and t.rpartition(".")[2].startswith("_")))
    assert not private, f"{module} imports private names {private}"


def test_the_routing_core_and_the_store_never_import_analysis_asgi_or_web() -> None:
    for module, targets in GRAPH.items():
        if layer(module) in (LAYERS.index("routing"), LAYERS.index("store")):
            bad = [t for t in targets if t.split(".")[1:2] in (["analysis"], ["asgi"], ["web"])]
            assert not bad, f"{module} imports {bad}"
