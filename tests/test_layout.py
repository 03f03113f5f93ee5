# SPDX-License-Identifier: Apache-2.0
"""The house rules of the package layout (CONTRIBUTING.md), checked on the source:

- task models, inference and the smoothers use priors through the public contract only (no ``prior._hook(``),
  and no module imports another module's private names;
- no function takes more than 12 parameters (a typed config instead);
- no import cycle between the package's modules (imports inside functions included);
- the command-line modules only parse, build a config, call the library and print.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Folder -> installed package name.
PACKAGES = {"pyro_dvae": "pyro_dvae", "models": "pyro_dvae.models", "inference": "pyro_dvae.inference"}
MAX_PARAMETERS = 12


def modules():
    """``{module name: path}`` of every module of the package."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


MODULES = modules()


def _tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def test_no_private_prior_calls_from_models_inference_or_smoothers():
    call = re.compile(r"\b(?!self\b|cls\b|super\(\))(\w+)\._(?!_)[a-z]\w*\(")
    paths = [*(ROOT / "models").rglob("*.py"), *(ROOT / "inference").rglob("*.py"), ROOT / "pyro_dvae/smoothing.py"]
    found = []
    for path in paths:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if call.search(code) and "._version" not in code:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not found, "private calls across modules:\n" + "\n".join(found)


def test_no_module_imports_private_names_of_another():
    """Within the package (a private name of another library, such as Pyro's ``_make_handler``, is that
    library's business)."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(_tree(path)):
            own = isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pyro_dvae"))
            if own:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}")
    assert not found, "imports of private names:\n" + "\n".join(found)


def test_no_function_takes_more_than_twelve_parameters():
    found = []
    for path in [*MODULES.values(), *sorted((ROOT / "examples").glob("*.py"))]:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                count = len(params) + bool(a.vararg) + bool(a.kwarg)
                if params and params[0].arg in ("self", "cls"):
                    count -= 1
                if count > MAX_PARAMETERS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({count})")
    assert not found, f"functions over {MAX_PARAMETERS} parameters:\n" + "\n".join(found)


def _resolve(importer, node):
    """The package modules an import statement of module ``importer`` reaches."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer if MODULES[importer].name == "__init__.py" else importer.rsplit(".", 1)[0]
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{base}" if base else package
        targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return {t for t in targets if t in MODULES and t != importer}


def _import_graph():
    graph = {}
    for name, path in MODULES.items():
        graph[name] = set()
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _resolve(name, node)
    return graph


def _is_package_of(a, b):
    return b.startswith(a + ".")


def test_no_import_cycles():
    """Cycles between modules, ignoring the edges from a package to its own submodules (an ``__init__`` that
    re-exports them) and from a submodule to its parent packages (importing a sibling through the package)."""
    graph = {m: {t for t in ts if not _is_package_of(m, t) and not _is_package_of(t, m)}
             for m, ts in _import_graph().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("path", sorted((ROOT / "pyro_dvae/cli").glob("*.py")), ids=lambda p: p.stem)
def test_cli_modules_hold_no_task_logic(path):
    """A command module imports no numerical library at its top, and its ``run`` stays short: parse, build the
    config, call one library function, print."""
    tree = _tree(path)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in ("numpy", "scipy", "pyro", "soundfile") for n in names), (
                f"{path.name} imports {names} at module level")
    runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    for run in runs:
        statements = sum(isinstance(n, ast.stmt) for n in ast.walk(run)) - 1
        assert statements <= 40, f"{path.name}: run() has {statements} statements; move the work into the library"


@pytest.mark.parametrize("old,new", [("separation_model", "separation.model"), ("separation_run", "separation.run"),
                                     ("separation_vem", "separation.guide"),
                                     ("enhancement_training", "enhancement.training"),
                                     ("enhancement_task", "enhancement.task")])
def test_old_module_paths_warn_and_alias_the_new_ones(old, new):
    import importlib
    import sys

    sys.modules.pop(f"pyro_dvae.models.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"pyro_dvae.models.{new}"):
        module = importlib.import_module(f"pyro_dvae.models.{old}")
    assert module is importlib.import_module(f"pyro_dvae.models.{new}")
