"""The package's architecture, checked: its parts with one dependency direction
(_util < searchers < memory < cluster < platform < bench < cli), Ray only in `cluster`, no
import circle, benchmarks only in `bench` and only through the product's public names, and
a public API that imports. Every import statement counts, including those inside
functions and the lazy export tables (`_EXPORTS`) of package `__init__` files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import metanas

PACKAGE = Path(metanas.__file__).resolve().parent
PARTS = ("_util", "searchers", "memory", "cluster", "platform", "bench", "cli")  # lowest first
PRODUCT = ("searchers", "memory", "cluster", "platform")  # what a benchmark measures
TOP = len(PARTS)  # metanas itself, __main__, testing: above every part


def part_of(module: str) -> int:
    pieces = module.split(".")
    return PARTS.index(pieces[1]) if len(pieces) > 1 and pieces[1] in PARTS else TOP


def package_sources(root: Path = PACKAGE) -> dict[str, str]:
    """{module name: source} of every module of the package."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("metanas",) + path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text()
    return sources


def imports_of(module: str, source: str, known: set[str]) -> set[str]:
    """Every module `module` imports anywhere in its source (names of the package resolved
    to the most specific known module; other imports by their top-level name)."""
    is_package = module in {k.rsplit(".", 1)[0] for k in known if "." in k} or module == "metanas"
    found: set[str] = set()

    def add(name: str, names: list[str] = ()) -> None:
        if not name.startswith("metanas"):
            found.add(name.split(".")[0])
            return
        subs = [f"{name}.{n}" for n in names if f"{name}.{n}" in known]
        found.update(subs or [name])

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            add(base, [a.name for a in node.names])
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("metanas.")
        ):
            if node.value in known:  # lazy exports and import_module("...") name modules as strings
                found.add(node.value)
    found.discard(module)
    return found


def violations(sources: dict[str, str]) -> list[str]:
    known = set(sources)
    graph = {m: {i for i in imports_of(m, s, known) if i in known} for m, s in sources.items()}
    problems = []
    for module, source in sources.items():
        for target in graph[module]:
            if part_of(target) > part_of(module):
                problems.append(f"upward import: {module} -> {target}")
        if "ray" in imports_of(module, source, known) and part_of(module) != PARTS.index("cluster"):
            problems.append(f"ray imported outside metanas.cluster: {module}")
    problems += [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems + benchmark_violations(sources)


def benchmark_violations(sources: dict[str, str]) -> list[str]:
    """A benchmark module inside the product's parts, and a benchmark that reaches for a
    private name (`_x`) of the product instead of its public API."""
    problems = []
    for module, source in sources.items():
        pieces = module.split(".")
        if len(pieces) > 2 and pieces[1] in PRODUCT and pieces[-1].startswith("bench"):
            problems.append(f"benchmark outside metanas.bench: {module}")
        if pieces[1:2] != ["bench"]:
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("metanas.")
                and not node.level
            ):
                if node.module.split(".")[1] != "bench":
                    problems += [
                        f"private name used by a benchmark: {module} -> {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                    ]
            elif isinstance(node, ast.Attribute) and _private(node.attr) and not _is_self(node.value):
                problems.append(f"private name used by a benchmark: {module} -> .{node.attr}")
    return problems


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_upward_import_no_ray_outside_cluster_and_no_import_circle():
    sources = package_sources()
    assert len(sources) > 30 and any(m.startswith("metanas.cluster.") for m in sources)
    assert violations(sources) == []


def test_the_checker_catches_what_it_is_for():
    sources = {
        "metanas": "",
        "metanas.searchers": "",
        "metanas.searchers.a": "def f():\n    from metanas.cli.main import main\n",  # lazy, upward
        "metanas.memory": "",
        "metanas.memory.b": "import ray\nfrom metanas.memory.c import x\n",  # ray outside cluster
        "metanas.memory.c": "from . import b\n",  # relative, closes a circle b -> c -> b
        "metanas.platform": "",
        "metanas.platform.e": "_EXPORTS = {'x': 'metanas.memory.c'}\n",  # a string import
        "metanas.platform.d": "import metanas.platform.e\n",
        "metanas.cli": "",
        "metanas.cli.main": "",
    }
    found = violations(sources)
    assert "upward import: metanas.searchers.a -> metanas.cli.main" in found
    assert "ray imported outside metanas.cluster: metanas.memory.b" in found
    assert "import circle: metanas.memory.b -> metanas.memory.c -> metanas.memory.b" in found
    # platform -> memory (a lazy export) and platform -> platform are fine
    assert len(found) == 3


def test_the_checker_keeps_benchmarks_in_their_room_and_on_the_public_api():
    sources = {
        "metanas": "",
        "metanas.memory": "",
        "metanas.memory.store": "class MemoryStore: ...\n",
        "metanas.memory.bench_store": "",  # a benchmark among the product's modules
        "metanas.bench": "",
        "metanas.bench.helpers": "def _fmt(x): return x\n",
        "metanas.bench.store": (
            "from metanas.memory.store import MemoryStore, _Group\n"  # a private class
            "from metanas.bench.helpers import _fmt\n"  # private, but the benchmarks' own: fine
            "def f(store):\n    return store._groups, store.__len__(), _fmt(1)\n"  # a private attribute
        ),
    }
    found = violations(sources)
    assert "benchmark outside metanas.bench: metanas.memory.bench_store" in found
    assert "private name used by a benchmark: metanas.bench.store -> metanas.memory.store._Group" in found
    assert "private name used by a benchmark: metanas.bench.store -> ._groups" in found
    assert len(found) == 3


def test_every_public_name_imports():
    for name in metanas.__all__:
        assert getattr(metanas, name) is not None, name


@pytest.mark.parametrize("part", ["searchers", "memory"])
def test_the_lower_parts_never_load_ray(part):
    code = f"""
import importlib, pkgutil, sys
import metanas.{part} as pkg
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    importlib.import_module(info.name)
print("LOADED_RAY" if "ray" in sys.modules else "NO_RAY", len(sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("NO_RAY"), proc.stdout


def readme_layout() -> dict[str, str]:
    """{module path: its one-line job} from the README's Layout section's tree."""
    text = (PACKAGE.parent / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```\n", 2)[1]
    listed, folders = {}, []
    for line in tree.splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        name, _, job = line.strip().partition(" ")
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            listed["/".join(folders + [name])] = job.strip()
    return listed


def test_the_readme_layout_lists_every_module_with_its_job():
    modules = {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent == PACKAGE
    }
    listed = readme_layout()
    assert set(listed) == modules, (sorted(modules - set(listed)), sorted(set(listed) - modules))
    assert all(len(job) > 10 for job in listed.values())
    assert "THE DEFAULT" in listed["metanas/memory/policies/model.py"]


MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert long == []


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    """The settings are pyproject.toml's [tool.ruff] (line length 110)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "metanas", "tests", "scripts"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
