"""Only the adapter (detector/interop/ultralytics.py) imports ultralytics: every module of the
package is parsed, imports inside functions and ``importlib.import_module("ultralytics...")``
included. The checker itself is shown to catch each form of import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

ADAPTER = Path("detector/interop/ultralytics.py")
IMPORTERS = {("importlib", "import_module"), ("builtins", "__import__")}


def _is_ultralytics(name: str | None) -> bool:
    return name is not None and (name == "ultralytics" or name.startswith("ultralytics."))


def _dynamic_import_name(call: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("...")``, ``import_module("...")`` or
    ``__import__("...")`` with a literal string, else None."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        called = (func.value.id, func.attr)
    elif isinstance(func, ast.Name):
        called = ("importlib" if func.id == "import_module" else "builtins", func.id)
    else:
        return None
    if called not in IMPORTERS or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def ultralytics_imports(source: str) -> list[str]:
    """Every import of ultralytics in ``source`` (anywhere: module level, functions, classes), as
    ``line N: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if _is_ultralytics(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.level == 0 and _is_ultralytics(node.module) else []
        elif isinstance(node, ast.Call):
            name = _dynamic_import_name(node)
            names = [name] if _is_ultralytics(name) else []
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names]
    return found


def modules_importing_ultralytics(root: Path, package: str = "detector") -> dict[str, list[str]]:
    """``{path relative to root: imports}`` for every module under ``root/package`` that imports ultralytics."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        imports = ultralytics_imports(path.read_text())
        if imports:
            found[str(path.relative_to(root))] = imports
    return found


def test_only_the_adapter_imports_ultralytics() -> None:
    found = modules_importing_ultralytics(REPO)
    assert set(found) == {str(ADAPTER)}, {k: v for k, v in found.items() if k != str(ADAPTER)}


@pytest.mark.parametrize(
    "source",
    [
        "import ultralytics",
        "import os, ultralytics.nn.tasks as tasks",
        "from ultralytics import YOLO",
        "from ultralytics.utils.ops import scale_boxes",
        "def f():\n    from ultralytics.nn.tasks import DetectionModel\n    return DetectionModel",
        "class A:\n    def f(self):\n        import ultralytics\n",
        "import importlib\nm = importlib.import_module('ultralytics.utils')",
        "from importlib import import_module\nm = import_module('ultralytics')",
        "m = __import__('ultralytics')",
    ],
)
def test_the_checker_finds_every_form_of_import(source: str) -> None:
    assert len(ultralytics_imports(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "from detector.interop import ultralytics as ul",
        "from . import ultralytics",
        "from .ultralytics import TRAIN_AUGMENT",
        "import ultralytics_like",
        "name = 'ultralytics'",
        "import importlib\nm = importlib.import_module('detector.interop.ultralytics')",
    ],
)
def test_the_checker_leaves_other_imports_alone(source: str) -> None:
    assert ultralytics_imports(source) == [], source


def test_a_module_that_imports_ultralytics_outside_the_adapter_fails_the_check(tmp_path) -> None:
    """A copy of the package with one violating module (an import inside a function) is caught."""
    package = tmp_path / "detector"
    for path in (REPO / "detector").rglob("*.py"):
        target = package / path.relative_to(REPO / "detector")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (package / "tools" / "sneaky.py").write_text("def f():\n    from ultralytics import YOLO\n    return YOLO\n")
    found = modules_importing_ultralytics(tmp_path)
    assert set(found) == {str(ADAPTER), "detector/tools/sneaky.py"}
    assert found["detector/tools/sneaky.py"] == ["line 2: ultralytics"]
