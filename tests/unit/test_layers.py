"""The package layers of docs/architecture.md, enforced: every import points down, no cycles, nothing reaches flows/.

Read from the source with ``ast`` (imports inside functions count too), so a late import cannot hide a violation.
Each rule is also run against a planted violation, so a rule that stopped seeing anything would fail here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "src" / "distilflow"

# Lowest first. A unit is a package folder of src/distilflow or one of the modules allowed outside any package.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "__init__ paths tasks numerics errors",  # shared leaves: import nothing of distilflow
        "config",  # params.yaml typed; imports only the leaves
        "runtime",  # one stage process
        "tracking",  # MLflow runs and tags
        "data models metrics",  # what the jobs work on
        "serving",  # the served pyfunc: loads what models/ builds
        "training evaluation export registry",  # the jobs a stage calls
        "stages",  # one module per dvc.yaml stage
        "orchestration team",  # many stage runs; the team stack
        "glue",  # the GLUE suite
        "workflows",  # the Prefect flows: the pipeline and the GLUE suite (flows/*.py are their entry points)
        "cli",  # parses, then calls one library function
        "__main__",  # python -m distilflow
    )
)
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(file: Path) -> str:
    """The layer unit of a source file: its package folder, or its own name for a module outside any package."""
    relative = file.relative_to(PACKAGE_DIR)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_of(file: Path) -> str:
    relative = file.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(source: str, module: str) -> set[str]:
    """Every distilflow module ``source`` imports, at any depth; relative imports resolved against ``module``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "distilflow"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "distilflow":
                continue
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")}
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def unit_of_module(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def source_files() -> list[Path]:
    return sorted(path for path in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in path.parts)


def module_graph(files: Iterable[Path]) -> dict[str, set[str]]:
    return {module_of(file): imported_modules(file.read_text(encoding="utf-8"), module_of(file)) for file in files}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point sideways or up: from a unit to another unit of the same or a higher layer."""
    found = []
    for module, imports in sorted(graph.items()):
        source = unit_of_module(module)
        for target in sorted(imports):
            unit = unit_of_module(target)
            if unit == source or unit == "__init__":  # within a package, or the package's own docstring module
                continue
            if source not in LAYER_OF or unit not in LAYER_OF:
                found.append(f"{module} -> {target}: {source if source not in LAYER_OF else unit} has no layer")
            elif LAYER_OF[unit] >= LAYER_OF[source]:
                found.append(f"{module} (layer {LAYER_OF[source]}) -> {target} (layer {LAYER_OF[unit]})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def parent_imports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ too: those arrows count for cycles."""
    result = {}
    for module, imports in graph.items():
        parents = {".".join(t.split(".")[:depth]) for t in imports for depth in range(2, t.count(".") + 1)}
        own = {".".join(module.split(".")[:depth]) for depth in range(1, module.count(".") + 2)}
        result[module] = imports | (parents - own)  # a package's modules may run its __init__: Python does that first
    return result


def test_every_module_sits_in_a_layer() -> None:
    units = {unit_of(file) for file in source_files()}
    unplaced = sorted(units - set(LAYER_OF))
    assert not unplaced, f"{unplaced}: put the module in a domain package, or give it a layer in LAYERS"


def test_every_import_points_to_a_lower_layer() -> None:
    violations = layer_violations(module_graph(source_files()))
    assert not violations, "imports that break the layer order of docs/architecture.md:\n" + "\n".join(violations)


def test_no_import_cycle_between_modules() -> None:
    found = cycles(parent_imports(module_graph(source_files())))
    assert not found, f"import cycles: {found}"


def test_each_package_says_what_it_owns_and_imports_nothing() -> None:
    """Importing ``distilflow.cli`` stays light: a package's ``__init__`` is its docstring, not a re-export hub."""
    for init in sorted(PACKAGE_DIR.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init.relative_to(REPO_ROOT)}: say what the package owns in a docstring"
        if init.parent.name in {"metrics", "stages", "team"}:
            continue  # metrics registers evaluate's module; team's __init__ and stages' are existing public faces
        imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
        assert not any(
            isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distilflow") for node in imports
        ), f"{init.relative_to(REPO_ROOT)} imports distilflow modules"


def test_nothing_in_src_runs_a_file_of_flows() -> None:
    """flows/ may import the library; the library never imports or executes flows/ (its paths are only data)."""
    offenders = []
    for file in source_files():
        text = file.read_text(encoding="utf-8")
        if "spec_from_file_location" in text or "run_path(" in text or "import flows" in text:
            offenders.append(str(file.relative_to(REPO_ROOT)))
    allowed: set[str] = set()
    assert set(offenders) <= allowed, f"{sorted(set(offenders) - allowed)} load code by path from outside src/"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("distilflow.config.params", "from distilflow.registry.gate import x", "layer 1) -> distilflow.registry.gate"),
        ("distilflow.models.loading", "def f():\n    import distilflow.training.loop", "-> distilflow.training.loop"),
        ("distilflow.data.glue_io", "from distilflow.models import batching", "-> distilflow.models.batching"),
        ("distilflow.tracking.runs", "from ..stages import ingest", "-> distilflow.stages.ingest"),
        ("distilflow.runtime.host", "from distilflow.cli import app", "-> distilflow.cli"),
        ("distilflow.glue.suite", "from distilflow.workflows import pipeline", "-> distilflow.workflows.pipeline"),
    ],
)
def test_a_planted_violation_fails(module: str, source: str, expected: str) -> None:
    """Up, sideways, late and relative imports are all seen."""
    graph = {module: imported_modules(source, module)}
    assert any(expected in line for line in layer_violations(graph)), layer_violations(graph)


def test_a_planted_cycle_fails() -> None:
    graph = {
        "distilflow.runtime.dispatch": imported_modules("def f():\n    from distilflow.cli import app", "x"),
        "distilflow.cli": imported_modules("from distilflow.runtime import dispatch", "x"),
    }
    assert cycles(parent_imports(graph)) == [["distilflow.cli", "distilflow.runtime.dispatch"]]
    assert cycles({"distilflow.a": {"distilflow.b"}, "distilflow.b": set()}) == []
