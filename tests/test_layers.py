"""Imports point one way: datasets ← models ← models.runner ← the scripts' folders; no cycle, no script imported.

    python -m pytest -q tests/test_layers.py

Reads every module's imports with `ast` (those inside functions too), so it needs no TensorFlow and fails as
soon as someone adds an upward import, a cycle, or an import of a script.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What installs is one package: the folders below are its subpackages (setup.cfg's package_dir).
PREFIX = "surrogate_supervision."
# A package may import its own layer and those below it. The three script folders share the top layer; among
# them only library modules (no `if __name__ == "__main__":`) may be imported.
# `models.runner` (the run plumbing) is a subpackage of `models` with a layer of its own, above the networks.
# `experiments.speed` (the speed lab) is a subpackage of `experiments` in the top layer with it, under a key of its
# own so that an import cycle between the lab and the study fails too.
LAYERS = {"datasets": 0, "models": 1, "models.runner": 2, "pretrain": 3, "finetune": 3, "experiments": 3,
          "experiments.speed": 3}
# Subpackages that are keys of LAYERS, apart from their parent package.
SUBPACKAGES = ("models.runner", "experiments.speed")
PACKAGES = ("datasets", "models", "pretrain", "finetune", "experiments")
# Library modules that can also be run with `python -m` (a convenience, not a script other code depends on).
LIBRARY_WITH_MAIN = {"datasets.synthetic"}


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


MODULES = project_modules()


def is_script(name):
    source = MODULES[name].read_text()
    return 'if __name__ == "__main__":' in source and name not in LIBRARY_WITH_MAIN


def imports(name):
    """The project modules `name` imports (the most specific module each import statement names)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            target = target.removeprefix(PREFIX)
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def bare_imports(path):
    """Imports of a project folder by its bare name (`import datasets`), which would load whatever else in
    site-packages is called that (Hugging Face's `datasets`, say) instead of this toolkit's."""
    tree = ast.parse(path.read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level]
    return sorted(name for name in names if name and name.split(".")[0] in PACKAGES)


def test_project_modules_are_imported_through_the_one_package_name():
    offenders = {str(p.relative_to(REPO)): bare_imports(p) for p in [*MODULES.values(), *(REPO / "tests").glob("*.py")]}
    assert {path: names for path, names in offenders.items() if names} == {}


def package(name):
    """The layer's key: `models.runner` for the plumbing, `experiments.speed` for the speed lab, else the top-level
    package."""
    return next((sub for sub in SUBPACKAGES if name == sub or name.startswith(sub + ".")), name.split(".")[0])


def layer(name):
    return LAYERS[package(name)]


def test_every_package_has_a_layer():
    assert {package(name) for name in MODULES} == set(LAYERS)


def test_the_speed_lab_is_read_as_part_of_the_top_layer():
    """experiments/speed/ is read like any folder: its modules named from their paths, their imports followed,
    their layer the other script folders'."""
    lab = {name for name in MODULES if package(name) == "experiments.speed"}
    assert {"experiments.speed", "experiments.speed.benchmark", "experiments.speed.train_step"} <= lab
    assert {layer(name) for name in lab} == {layer("experiments"), LAYERS["pretrain"], LAYERS["finetune"]}
    assert "experiments.speed.train_step" in GRAPH["experiments.speed.benchmark"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_and_never_at_a_script(name):
    upward = sorted(t for t in GRAPH[name] if layer(t) > layer(name))
    assert not upward, f"{name} imports the higher layer(s) {upward}"
    scripts = sorted(t for t in GRAPH[name] if is_script(t))
    assert not scripts, f"{name} imports the script(s) {scripts}; move what they share into a library module"


def test_no_import_cycle():
    """Between packages and between modules (a package's __init__ counts as the package)."""
    packages = {}
    for name, targets in GRAPH.items():
        packages.setdefault(package(name), set()).update(package(t) for t in targets)
    for graph in (packages, GRAPH):
        state = {}

        def visit(node, path, graph=graph, state=state):
            state[node] = "open"
            for nxt in sorted(graph.get(node, ())):
                if nxt == node:
                    continue
                if state.get(nxt) == "open":
                    cycle = path[path.index(nxt):] + [nxt]
                    pytest.fail(f"import cycle: {' → '.join(cycle)}")
                if nxt not in state:
                    visit(nxt, path + [nxt])
            state[node] = "done"

        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
