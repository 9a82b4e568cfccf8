"""Dependencies run one way: no module of recbole_gfm imports a module of a higher layer.

The layers, lowest first (written once, here). A module may import its own layer and those below.
Imports inside functions count too. Name-based lookups (``Config`` finding a model class by its
name, the run finding ``<Model>Trainer``) are RecBole's registry convention, not imports.
"""

from __future__ import annotations

import ast
import os

import recbole_gfm

LAYERS = [
    # no recbole_gfm imports but these; the registry finds models by name (RecBole's convention)
    ["recbole_gfm", "errors", "artifacts", "checkpoint", "compat", "registry"],
    ["schema", "settings", "config"],  # the keys' schema, the checks against it, RecBole's Config
    ["data"],  # datasets, validation, protocols and scenarios, text vectors, the graph, link batches
    ["encoders"],  # the foundation networks, plain torch
    ["foundation"],  # the foundation's trainer and artifact store
    ["model"],
    ["run"],  # the stages, the multi-process launch, resume, evaluation, per-user values
    ["quick_start"],  # the run: config -> data -> foundation -> model -> fit -> evaluate -> record
    ["cli", "bench", "inference"],
]
PACKAGE = os.path.dirname(recbole_gfm.__file__)


def layer_of(module: str) -> int:
    """Layer of a dotted module name below ``recbole_gfm`` (``data.graph`` -> the ``data`` layer)."""
    head = module.split(".")[0] if module else "recbole_gfm"
    for level, names in enumerate(LAYERS):
        if head in names:
            return level
    raise AssertionError(f"recbole_gfm.{module} is in no layer: add it to LAYERS in {__file__}")


def modules() -> dict[str, str]:
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                found[relative.removesuffix("__init__").rstrip(".")] = path
    return found


def imported(path: str) -> list[tuple[str, int]]:
    """recbole_gfm modules imported by the file (relative names) with their line numbers."""
    out = []
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "recbole_gfm"]
        for name in names:
            if name == "recbole_gfm" or name.startswith("recbole_gfm."):
                out.append((name.removeprefix("recbole_gfm").lstrip("."), node.lineno))
    return out


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, path in modules().items():
        own = layer_of(module)
        for target, line in imported(path):
            if target and layer_of(target) > own:
                upward.append(f"{os.path.relpath(path, PACKAGE)}:{line} ({LAYERS[own][0]}) imports recbole_gfm.{target} ({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from recbole_gfm.quick_start import run\n")
    assert imported(str(bad)) == [("quick_start", 2)]
    assert layer_of("quick_start") > layer_of("model.gfm")
