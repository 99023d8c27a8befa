"""The package's import graph: no cycles, no import up a layer of yt_bias/layering.py, every module in a layer.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` at module level and inside functions, plus string constants that name a
package module exactly (the command modules that the CLI loads with importlib).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from yt_bias import layering

ROOT = pathlib.Path(layering.__file__).resolve().parent


def module_files(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    """Dotted module name -> source file, for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict) -> str | None:
    """The longest prefix of ``name`` that is a package module (``a.b.attr`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The package modules that ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from pkg import submodule`` imports the submodule; ``from pkg import name`` the module pkg.
                found.add(_owner(f"{source}.{alias.name}", modules))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and node.value in modules:
            found.add(node.value)  # a module loaded by name (importlib.import_module)
    found.discard(None)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports; the known exceptions of the layer map are left out."""
    modules = module_files()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    graph[layering.__name__] = set()  # the layer map names every module; it imports none of them
    for importer, imported in layering.KNOWN_EXCEPTIONS:
        graph.get(importer, set()).discard(imported)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a path."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        start = min(component)
        # Breadth-first search for the shortest path back to start inside the component.
        parents, frontier = {start: None}, [start]
        while frontier and start not in [s for f in frontier for s in graph[f]]:
            nxt = []
            for node in frontier:
                for succ in sorted(graph[node] & component):
                    if succ not in parents:
                        parents[succ] = node
                        nxt.append(succ)
            frontier = nxt
        last = next(f for f in frontier if start in graph[f])
        path = [last]
        while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
        cycles.append(list(reversed(path)) + [start])
    return cycles


GRAPH = import_graph()


def test_every_module_is_in_exactly_one_layer():
    entries = [entry for _, layer in layering.LAYERS for entry in layer]
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert not duplicates, f"entries in more than one layer of yt_bias/layering.py: {duplicates}"
    missing = []
    for module in sorted(GRAPH):
        try:
            layering.layer_of(module)
        except KeyError:
            missing.append(module)
    assert not missing, (
        f"modules in no layer: {missing}. Add each (or its package as 'pkg.*') to the LAYERS entry of its layer "
        "in yt_bias/layering.py (lowest first: base, data, core, evaluation, ranking, training, serving, "
        "integrations, studies, entry points)."
    )
    stale = sorted(e for e in entries if e.removesuffix(".*") not in GRAPH)
    assert not stale, f"yt_bias/layering.py names modules or packages that do not exist: {stale}; remove them."


def test_a_package_entry_covers_its_modules_only():
    assert layering.layer_of("yt_bias.core.model") == layering.layer_of("yt_bias.core")
    with pytest.raises(KeyError):
        layering.layer_of("yt_bias.corex")  # a prefix of the name, not its package


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles between package modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_goes_up_a_layer():
    names = [name for name, _ in layering.LAYERS]
    upward = []
    for importer, imported in sorted((a, b) for a, deps in GRAPH.items() for b in deps):
        low, high = layering.layer_of(importer), layering.layer_of(imported)
        if high > low:
            upward.append(f"{importer} ({names[low]}) imports {imported} ({names[high]})")
    assert not upward, "imports that go up a layer of yt_bias/layering.py:\n" + "\n".join(upward)


def test_known_exceptions_are_still_needed():
    modules = module_files()
    stale = [
        pair
        for pair in layering.KNOWN_EXCEPTIONS
        if pair[0] not in modules or pair[1] not in imports_of(pair[0], modules[pair[0]], modules)
    ]
    assert not stale, f"KNOWN_EXCEPTIONS in yt_bias/layering.py that no longer occur: {stale}; remove them."


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import b\n")
    (package / "a.py").write_text("def f():\n    from pkg.sub.b import thing\n    return thing\n")
    (package / "sub" / "b.py").write_text("import pkg.a\nLOADED = 'pkg.c'\n")
    (package / "c.py").write_text("from .sub import b as _b\n")
    modules = module_files(package)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a", "pkg.c"}
    assert graph["pkg.c"] == {"pkg.sub.b"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]  # shortest cycle through the first module
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_layer_of_names_the_file_for_an_unknown_module():
    with pytest.raises(KeyError, match="yt_bias/layering.py"):
        layering.layer_of("yt_bias.not_a_module")
