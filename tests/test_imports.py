"""The import graph of the suite's packages is one-way: no cycle between files or packages.

Every ``import`` / ``from ... import`` of every module of ``interventions/``, ``tasks/``,
``siit_training/``, ``ablations/`` and ``abench/`` is read with ``ast``, including imports inside
functions (a lazy import that closes a cycle is still a cycle). Packages are layered, lowest first:
``interventions`` (nodes, hooks, measures) < ``tasks`` < ``siit_training`` (the trainer of the SIIT
models) < ``ablations`` < ``abench``; a module may import only its own package or a lower one. The
benchmark (every package but the trainer) never imports the trainer.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("interventions", "tasks", "siit_training", "ablations", "abench")
# the benchmark files and the scripts sit above every package: they may import any package, and no package imports them
TOP = ("benchmarks", "scripts")
# trains the SIIT models the benchmark loads; nothing the benchmark runs may depend on it (scripts that retrain may)
TRAINER = "siit_training"


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS + TOP:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The suite's modules that ``name`` imports (anywhere in the file)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_graph_sees_every_package():
    g = graph()
    assert {n.split(".")[0] for n in g} == set(LAYERS + TOP)
    assert "interventions.hooks" in g["ablations.task_data"]  # a real edge is found
    assert "abench.peers" in g["benchmarks.test_peers"] and "abench.numeric_noise" in g["scripts.save_baseline"]


def test_no_package_imports_a_benchmark_file_or_a_script():
    """The product never runs back up into a test file (abench/scale_cost.py once imported benchmarks/test_peers.py)."""
    bad = sorted(f"{src} imports {dst}" for src, targets in graph().items() if src.split(".")[0] in LAYERS
                 for dst in targets if dst.split(".")[0] in TOP)
    assert not bad, "\n".join(bad)


def test_no_cycle_between_files():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_packages():
    pkg_edges: dict[str, set[str]] = {}
    for src, targets in graph().items():
        pkg_edges.setdefault(src.split(".")[0], set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != src.split(".")[0])
    cycle = find_cycle(pkg_edges)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_imports_go_only_downwards():
    rank = {pkg: i for i, pkg in enumerate(LAYERS + TOP)}
    upward = sorted(
        f"{src} imports {dst}"
        for src, targets in graph().items()
        for dst in targets
        if rank[dst.split(".")[0]] > rank[src.split(".")[0]]
    )
    assert not upward, "imports from a lower package to a higher one:\n" + "\n".join(upward)


def test_the_benchmark_never_imports_the_trainer():
    g = graph()
    assert any(dst.startswith(TRAINER + ".") for dst in g["siit_training.__main__"])  # a real edge into the trainer is seen
    bad = sorted(f"{src} imports {dst}" for src, targets in g.items() if src.split(".")[0] not in (TRAINER, "scripts")
                 for dst in targets if dst.split(".")[0] == TRAINER)
    assert not bad, "\n".join(bad)


def test_interventions_is_the_ground_floor():
    bad = sorted(f"{src} imports {dst}" for src, targets in graph().items() if src.split(".")[0] == "interventions"
                 for dst in targets if dst.split(".")[0] != "interventions")
    assert not bad, "\n".join(bad)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
