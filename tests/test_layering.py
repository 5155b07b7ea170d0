"""Imports point down the layers (DESIGN.md), and no two packages import each other.

Every module's imports are read from its source (``ast``: imports inside functions and under
``TYPE_CHECKING`` count too). A module may import its own package, any package of a lower layer,
and, within one layer, only what :data:`SAME_LAYER` allows.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from tests.helpers import REPO

PACKAGE = "detector"

# Bottom to top: the top-level modules and packages of detector/ (``""`` is detector/__init__.py,
# the public API that re-exports the library: at the top, with the entry points).
LAYERS: list[set[str]] = [
    {"errors", "types", "boxes", "letterbox", "runs", "datafiles", "images", "device", "console"},
    {"config"},
    {"models", "losses", "data"},
    # checkpoint.py rebuilds the model a checkpoint describes (models.zoo.instantiate_model), so it
    # sits above models, not beside config as DESIGN.md's picture draws it; it stays below eval,
    # export and inspect, which load our checkpoints without the training package
    {"checkpoint"},
    {"train", "eval", "export", "inspect"},
    {"interop"},
    # prediction for users (detector.load): loads ours, Ultralytics' (interop) and exported files
    {"predict"},
    {"tools"},
    {"tasks", "cli", ""},
]

# Within the layers of models / losses / data and of train / eval / export / inspect, packages
# import each other only as DESIGN.md says: these (importer, imported) pairs. Evaluating,
# predicting, exporting and inspecting never import the training package. Other layers are free
# inside (the bottom one: the error classes, types, box functions, atomic I/O ...).
RESTRICTED_LAYERS = ({"models", "losses", "data"}, {"train", "eval", "export", "inspect"})
SAME_LAYER = {
    ("train", "eval"),  # the loop validates with the evaluator and its post-processing
}

# Deliberate exceptions, each with its reason (none today). Any other violation fails the test,
# and so does a line that no longer matches anything.
ALLOWED_IMPORTS: set[tuple[str, str]] = set()
ALLOWED_CYCLES: set[frozenset[str]] = set()


def layer_of(package: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if package in names)


def package_of(module: str) -> str:
    """``detector.data.build`` -> ``data``; ``detector`` -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def module_name(path_parts: Iterable[str]) -> str:
    return ".".join(path_parts).removesuffix(".__init__")


def resolve(name: str) -> str:
    """The module behind an imported name: ``detector.x.y`` if that is a module or package, else
    the nearest enclosing one (``from detector.data.build import load_split``)."""
    parts = name.split(".")
    while len(parts) > 1:
        path = REPO.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            break
        parts.pop()
    return ".".join(parts)


def module_imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """The detector modules that ``module`` imports anywhere in ``source`` (relative imports resolved)."""
    found = set()
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]  # a name may be a submodule
        else:
            continue
        found |= {resolve(n) for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}
    return found


def all_imports() -> dict[str, set[str]]:
    """Every module under detector/ and what it imports from detector."""
    graph = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        name = module_name(path.relative_to(REPO).with_suffix("").parts)
        graph[name] = module_imports(name, path.read_text(), is_package=path.name == "__init__.py")
    return graph


def layer_violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs that point up a layer, or sideways where :data:`SAME_LAYER` does not allow."""
    found = set()
    for module, imported in graph.items():
        mine = package_of(module)
        for other in imported:
            theirs = package_of(other)
            if theirs == mine:
                continue
            up, same = layer_of(theirs) > layer_of(mine), layer_of(theirs) == layer_of(mine)
            if up or (same and LAYERS[layer_of(mine)] in RESTRICTED_LAYERS and (mine, theirs) not in SAME_LAYER):
                found.add((module, other))
    return found


def package_cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Groups of packages that import each other, directly or around a loop (strongly connected)."""
    edges: dict[str, set[str]] = {}
    for module, imported in graph.items():
        edges.setdefault(package_of(module), set()).update(package_of(m) for m in imported)
    reach = {p: _reachable(p, edges) for p in edges}
    return {frozenset({p} | {q for q in reach[p] if p in reach.get(q, set())}) for p in edges if p in reach[p]}


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [q for q in edges.get(start, ()) if q != start]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(edges.get(p, ()))
    return seen


def test_every_package_has_a_layer() -> None:
    packages = {package_of(m) for m in all_imports()}
    assert packages == set().union(*LAYERS), "give each package of detector/ a layer in LAYERS"


def test_imports_point_down_the_layers() -> None:
    found = layer_violations(all_imports())
    assert not found - ALLOWED_IMPORTS, "imports against the layers:\n" + "\n".join(
        f"{a} imports {b}" for a, b in sorted(found - ALLOWED_IMPORTS)
    )
    assert not ALLOWED_IMPORTS - found, f"fixed, delete from ALLOWED_IMPORTS: {sorted(ALLOWED_IMPORTS - found)}"


def test_no_import_cycles_between_packages() -> None:
    found = package_cycles(all_imports())
    assert not found - ALLOWED_CYCLES, f"packages importing each other: {[sorted(c) for c in found - ALLOWED_CYCLES]}"
    assert not ALLOWED_CYCLES - found, (
        f"fixed, delete from ALLOWED_CYCLES: {[sorted(c) for c in ALLOWED_CYCLES - found]}"
    )


def test_the_checks_catch_deliberate_violations() -> None:
    source = (
        "from __future__ import annotations\n"
        "from detector.errors import ConfigError\n"
        "from . import transforms\n"
        "from ..boxes import box_iou\n"
        "def f():\n"
        "    from detector.train.loop import train_epochs\n"  # inside a function: counts
        "    import detector.tools.benchmark.report\n"
    )
    imported = module_imports("detector.data.build", source)
    assert imported == {
        "detector.errors",
        "detector.data.transforms",
        "detector.boxes",
        "detector.train.loop",
        "detector.tools.benchmark.report",
    }
    graph = {
        "detector.data.build": imported,  # data -> train and -> tools: up
        "detector.eval.coco": {"detector.train.loop", "detector.data.loader"},  # eval -> train: sideways, refused
        "detector.export.onnx": {"detector.eval.postprocess"},  # sideways, not in SAME_LAYER
        "detector.train.loop": {"detector.eval.coco", "detector.train.ema"},  # allowed
        "detector.models.heads": {"detector.losses.loss"},  # sideways in the models / losses / data layer
        "detector.errors": {"detector.types"},  # the bottom layer is free inside ...
        "detector.types": {"detector.errors"},  # ... but not circular
        "detector.tasks.train": {"detector.tools.compare", "detector"},  # the top may use everything
    }
    assert layer_violations(graph) == {
        ("detector.data.build", "detector.train.loop"),
        ("detector.data.build", "detector.tools.benchmark.report"),
        ("detector.eval.coco", "detector.train.loop"),
        ("detector.export.onnx", "detector.eval.postprocess"),
        ("detector.models.heads", "detector.losses.loss"),
    }
    # data -> train -> eval -> data: a loop through three packages
    assert package_cycles(graph) == {frozenset({"errors", "types"}), frozenset({"data", "train", "eval"})}


def test_the_error_classes_import_nothing_heavy() -> None:
    """``detector.errors`` is what every layer raises: importing it (and so the package) loads no
    torch, Hydra, OmegaConf, numpy or OpenCV."""
    import subprocess
    import sys

    code = (
        "import sys, detector.errors; "
        "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'numpy', 'cv2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
