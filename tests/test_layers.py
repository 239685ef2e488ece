"""The package's layers import one way only (README *Layout*): drawn from the import statements
of every module under src/nn_clustering, there is no circle, no import of a later layer, and
no import inside a function except of a module that loads an optional framework."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nn_clustering"

#: The layers in order; a module may import its own unit and the units of earlier layers.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version"),
    ("core",),
    ("registry", "formats", "storage"),
    ("data", "estimators"),
    ("training",),
    ("experiments",),
    ("cli", ""),  # "" is the package itself (nn_clustering/__init__.py)
    ("__main__",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
#: Imports that may be deferred into a function: the optional, heavy frameworks.
FRAMEWORKS = frozenset({"keras", "tensorflow", "jax", "torch", "onnx", "onnxruntime", "matplotlib", "pandas",
                        "papermill", "boto3", "botocore", "dask", "h5py", "skimage", "networkx", "pygraphviz",
                        "joblib", "tqdm"})
#: Modules that defer their imports to start fast (the command line answers --help at once).
DEFERRING = frozenset({"nn_clustering.cli"})


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``source``."""

    source: str
    target: str
    in_function: bool
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, name: str, path: Path, known: set[str]) -> list[str]:
    """The project modules (or outside top-level packages) that an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    anchor = package[: len(package) - node.level + 1] if node.level else []
    base = ".".join(anchor + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every import statement of a module, with whether it sits inside a function; imports
    under ``if TYPE_CHECKING:`` are skipped (they never run)."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, name, path, known):
                    found.append(Import(name, target, in_function, child.lineno))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text()), False)
    return found


def unit(module: str) -> str:
    """The layer unit of a project module: ``core`` for ``nn_clustering.core.graph``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def project_imports() -> list[Import]:
    mods = modules()
    known = set(mods)
    out = []
    for name, path in mods.items():
        out += [i for i in imports_of(name, path, known) if i.target.split(".")[0] == "nn_clustering"]
    return out


def framework_modules() -> set[str]:
    """Project modules whose top level imports an optional framework."""
    mods = modules()
    known = set(mods)
    return {name for name, path in mods.items()
            if any(not i.in_function and i.target.split(".")[0] in FRAMEWORKS for i in imports_of(name, path, known))}


def upward(edges: list[Import]) -> list[Import]:
    """Imports of a later layer, or of another unit of the same layer."""
    return [e for e in edges if unit(e.source) != unit(e.target) and RANK[unit(e.target)] >= RANK[unit(e.source)]]


def circles(edges: list[Import]) -> list[list[str]]:
    """The cycles of the module import graph (one per strongly connected component of two or
    more modules, or a module importing itself), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def hidden(edges: list[Import], heavy: set[str]) -> list[Import]:
    """Imports inside a function of a project module that loads no optional framework."""
    return [e for e in edges if e.in_function and e.source not in DEFERRING and e.target not in heavy
            and e.target != "nn_clustering"]


def test_every_unit_has_a_layer():
    assert {unit(m) for m in modules()} <= set(RANK)


def test_no_import_runs_up_or_across_a_layer():
    assert upward(project_imports()) == []


def test_no_circle_of_imports():
    # package __init__ files re-export their modules: the edge back from a module to its own
    # package's __init__ would be a circle only if a module imported its package, which none does
    assert circles(project_imports()) == []


def test_imports_inside_functions_only_defer_a_framework():
    assert hidden(project_imports(), framework_modules()) == []


@pytest.mark.parametrize("framework, readers", [
    ("keras", {"keras", "keras_run"}), ("onnx", {"onnx", "onnx_eval", "onnx_ops", "onnx_walk", "onnx_run"}),
    ("torch", {"state_dict"}),
])
def test_each_framework_is_imported_only_by_its_own_reader(framework, readers):
    mods = modules()
    known = set(mods)
    users = {name.removeprefix("nn_clustering.formats.") for name, path in mods.items()
             if name.startswith("nn_clustering.formats")
             for i in imports_of(name, path, known) if i.target.split(".")[0] == framework}
    assert users and users <= readers, users


# --------------------------------------------------------------------------- the checks can fail


def test_the_checks_see_an_upward_import_a_circle_and_a_hidden_import():
    up = Import("nn_clustering.core.graph", "nn_clustering.formats.loader", False, 1)
    across = Import("nn_clustering.formats.npz", "nn_clustering.storage.files", False, 1)
    down = Import("nn_clustering.formats.npz", "nn_clustering.core.weights", False, 1)
    assert upward([up, across, down]) == [up, across]
    loop = [Import("nn_clustering.core.a", "nn_clustering.core.b", False, 1),
            Import("nn_clustering.core.b", "nn_clustering.core.c", True, 1),
            Import("nn_clustering.core.c", "nn_clustering.core.a", False, 1),
            Import("nn_clustering.core.c", "nn_clustering.core.d", False, 1)]
    assert circles(loop) == [["nn_clustering.core.a", "nn_clustering.core.b", "nn_clustering.core.c"]]
    assert hidden(loop, heavy=set()) == [loop[1]]
    assert hidden(loop, heavy={"nn_clustering.core.c"}) == []


def test_the_walker_reads_relative_and_function_level_imports(tmp_path, monkeypatch):
    package = tmp_path / "nn_clustering"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("from .graph import x\n")
    (package / "core" / "graph.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ..errors import E\nif TYPE_CHECKING:\n    from ..formats import y\n"
        "def f():\n    from . import dag\n    import keras\n")
    (package / "core" / "dag.py").write_text("")
    (package / "errors.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "SRC", package)
    got = {(i.source, i.target, i.in_function) for i in project_imports()}
    assert got == {("nn_clustering.core", "nn_clustering.core.graph", False),
                   ("nn_clustering.core.graph", "nn_clustering.errors", False),
                   ("nn_clustering.core.graph", "nn_clustering.core.dag", True)}


# --------------------------------------------------------------------------- readable functions

#: The longest function, def line to last line, that the house keeps (README *Development*).
MAX_FUNCTION_LINES = 60


def long_functions(source: str) -> list[tuple[str, int]]:
    """The functions of ``source`` longer than :data:`MAX_FUNCTION_LINES`, with their lengths."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_is_longer_than_sixty_lines():
    found = {module_name(path): long for path in sorted(SRC.rglob("*.py")) if (long := long_functions(path.read_text()))}
    assert found == {}


def test_the_length_check_counts_from_def_to_last_line():
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    assert long_functions(f"def ok():\n{body}") == []
    assert long_functions(f"def long():\n{body}    return 1\n") == [("long", 61)]
