"""The package's import structure: every module imports on its own, the import graph has
no cycle, and the NumPy reference depends on NumPy only.

The graph is read from the installed sources (every ``import`` statement, at module level
or inside functions: a lazy import is a dependency too, so a cycle hidden behind a
function-level import is caught as well). The lazy attribute loaders of package
``__init__`` files (``cnnkit.Sequential``, ``cnnkit.saving.load_model``) only re-export
names and are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cnnkit

ROOT = Path(cnnkit.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The cnnkit modules that ``name`` imports (statically, anywhere in the file, except
    the lazy attribute loaders of package ``__init__`` files, which only re-export)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(base: str, names: list[str]) -> None:
        if base in known:
            found.add(base)
        for n in names:
            if f"{base}.{n}" in known:
                found.add(f"{base}.{n}")

    tree = ast.parse(path.read_text(), str(path))
    if path.name == "__init__.py":
        nodes = [
            n for top in tree.body if not isinstance(top, ast.FunctionDef) for n in ast.walk(top)
        ]
    else:
        nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cnnkit":
                    resolve(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                if node.module:
                    base = f"{base}.{node.module}"
            else:
                base = node.module or ""
            if base.split(".")[0] == "cnnkit":
                resolve(base, [a.name for a in node.names])
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | {"cnnkit._core"}
    return {name: imported_modules(name, path, known) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    edges = graph()
    assert len(edges) > 30  # the walk found the package
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_layers_below_do_not_import_the_layers_above():
    # kernels < autograd < layers < training < models < applications; the registry and the
    # validation module are at the bottom, saving's files above models.
    edges = graph()
    below = {
        "cnnkit._validate": set(),
        "cnnkit.saving.registry": set(),
        # _proposals: the NumPy-only colour spaces and ranking that selective search's
        # kernel and its reference share (test below: it imports NumPy only).
        "cnnkit._proposals": set(),
        "cnnkit.reference": {"cnnkit", "cnnkit._proposals"},
        "cnnkit.ops": {"cnnkit", "cnnkit._core", "cnnkit._validate", "cnnkit._proposals"},
    }
    for name, allowed in below.items():
        assert edges[name] <= allowed, (name, edges[name] - allowed)
    for name, deps in edges.items():
        if name.startswith(("cnnkit.layers", "cnnkit.training")):
            assert not any(d.startswith("cnnkit.models") for d in deps), (name, deps)
        if name.startswith("cnnkit.layers"):
            assert not any(d.startswith("cnnkit.training") for d in deps), (name, deps)


@pytest.mark.parametrize("module", ["reference.py", "_proposals.py"])
def test_reference_depends_on_numpy_only(module):
    tree = ast.parse((ROOT / module).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: "from . import x" or "from .x import y"
                roots |= {f".{node.module or a.name}" for a in node.names}
            else:
                roots.add((node.module or "").split(".")[0])
    stdlib = {"__future__", "math", "collections", "typing", "heapq", "warnings"}
    assert roots <= stdlib | {"numpy", "._proposals"}, roots


def test_every_module_imports_fresh_on_its_own():
    # One interpreter per module would take a minute; one interpreter that forgets cnnkit
    # between imports (the compiled _core stays loaded) tests the same thing.
    names = sorted(n for n in modules() if n not in ("cnnkit.__main__",))
    script = (
        "import importlib, sys\n"
        "import cnnkit._core\n"
        f"for name in {names!r}:\n"
        "    for key in [k for k in sys.modules if k.startswith('cnnkit')]:\n"
        "        if key != 'cnnkit._core':\n"
        "            del sys.modules[key]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_import_cnnkit_loads_no_submodule_but_the_core():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cnnkit; print(sorted(m for m in sys.modules if m.startswith('cnnkit')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "['cnnkit', 'cnnkit._core']", done.stdout + done.stderr


def test_public_names_keep_their_paths():
    import cnnkit.layers
    import cnnkit.models

    assert cnnkit.Sequential is cnnkit.models.Sequential
    assert cnnkit.Model is cnnkit.models.Model
    assert cnnkit.load_model is cnnkit.io.load_model is cnnkit.saving.load_model
    assert cnnkit.models.NonFiniteLossError is cnnkit.training.NonFiniteLossError
    for name in cnnkit.layers.__all__:
        assert getattr(cnnkit.layers, name).__module__.startswith("cnnkit.layers")
    assert cnnkit.layers.Conv2D.__module__ == "cnnkit.layers.convolutional"
    assert callable(cnnkit.saving.register_serializable)
    assert callable(cnnkit.training.unpack_x_y_sample_weight)
