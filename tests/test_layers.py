"""The kit's rooms import downward only: a lower layer never imports a higher one (not even
inside a function), so no package cycle can form and a runtime never depends on an exporter.
The order is the one the README's Layout section describes."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folders and the package each one is installed as (pyproject's package-dir).
FOLDERS = {"kit": "kit", "export": "kit.export", "runtimes": "kit.runtimes"}
# Lowest first. A module may import its own layer and the ones before it.
LAYERS = [
    ["kit._version", "kit.core", "kit.models", "kit.synthetic"],
    ["kit.data"],
    ["kit.tasks"],
    ["kit.runtimes"],
    ["kit.check"],
    ["kit.export"],
    ["kit.deploy"],
    ["kit.bench"],
    ["kit.cli", "kit.demo", "kit.detect_demo", "kit.inspect_model", "kit"],
]


def layer_of(module: str) -> int:
    """The layer of the longest listed package that holds the module."""
    best, rank = "", None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, rank = name, index
    assert rank is not None, f"{module} is in no layer: add it to LAYERS and to the README's Layout"
    return rank


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def kit_imports(path: Path) -> set[str]:
    """Every kit module the file imports, at the top or inside functions."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from kit.core import errors" imports kit.core.errors
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in imported if name == "kit" or name.startswith("kit.")}


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_go_downward_only(module):
    path, own = modules()[module], layer_of(module)
    upward = sorted(name for name in kit_imports(path) if name != "kit" and layer_of(name) > own)
    # "import kit" (the facade, for kit.load) is allowed anywhere: it imports only kit.core at import time.
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"


def test_the_facade_stays_on_the_lowest_layers():
    """kit/__init__.py is imported by everyone, so at import time it may use only kit.core."""
    tree = ast.parse((ROOT / "kit" / "__init__.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module.startswith("kit")]
    assert all(layer_of(node.module) == 0 for node in top_level)


def test_pyproject_lists_every_package():
    """A wheel holds only the packages pyproject names: a folder left out installs fine in
    editable mode (as here) and is missing on every device install."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {}
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            folders[".".join((package, *parts))] = init.parent
    assert sorted(setuptools["packages"]) == sorted(folders)
