"""cfg stops at the entry points: below detector/tasks/ (outside detector/config/ and
detector/cli.py) no function or method is annotated with a DictConfig / ListConfig, no parameter
named cfg (or *_cfg) goes untyped or Any, and no module uses OmegaConf, DictConfig, ListConfig or
imports omegaconf / hydra.

Two passes: the imported functions' and classes' annotations (string annotations resolved in their
module), and the source (nested functions, module-level use)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.helpers import REPO

ENTRY_POINTS = ("detector.tasks", "detector.config", "detector.cli")
CONFIG_NAMES = re.compile(r"\b(DictConfig|ListConfig)\b")
CONFIG_USE = {"OmegaConf", "DictConfig", "ListConfig"}

# Deliberate exceptions, each with its reason (none today). Any violation not listed here fails the
# test, and so does a line that no longer matches anything.
ALLOWED_CONFIG_USE: set[str] = set()


def library_modules() -> list[str]:
    """Every module under detector/ below the entry points."""
    names = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in sorted((REPO / "detector").rglob("*.py"))]
    names = [n.removesuffix(".__init__") for n in names]
    return [n for n in names if not any(n == e or n.startswith(e + ".") for e in ENTRY_POINTS)]


def _text(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else str(annotation)


def _hints(obj: Any) -> dict[str, Any]:
    """Annotations resolved in their module where possible, as written otherwise."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return dict(getattr(obj, "__annotations__", {}))


def _untyped_cfg(name: str, annotation: str | None) -> bool:
    """A parameter named ``cfg`` or ``*_cfg`` written without an annotation or as ``Any``."""
    return (name == "cfg" or name.endswith("_cfg")) and annotation in (None, "Any", "typing.Any")


def _members(owner: Any) -> Iterator[Any]:
    """The functions and classes defined in ``owner`` (a module or a class), methods (static, class,
    property getters) and nested classes included; names that merely refer to them are skipped."""
    inside = "" if isinstance(owner, ModuleType) else owner.__qualname__ + "."
    for name, value in vars(owner).items():
        value = getattr(value, "__func__", value)  # staticmethod, classmethod
        if isinstance(value, property):
            value = value.fget
        if not (inspect.isfunction(value) or inspect.isclass(value)) or value.__qualname__ != inside + name:
            continue
        yield value
        if inspect.isclass(value):
            yield from _members(value)


def signature_violations(module: ModuleType) -> set[str]:
    """Annotations naming DictConfig / ListConfig (resolved in the module, aliases too):
    ``module.function(param)``, ``module.function -> DictConfig`` and ``module.Class.field``."""
    found = set()
    for member in _members(module):
        if member.__module__ != module.__name__:
            continue
        where = f"{module.__name__}.{member.__qualname__}"
        if inspect.isclass(member):
            found |= {f"{where}.{k}" for k, v in _hints(member).items() if CONFIG_NAMES.search(_text(v))}
            continue
        hints = _hints(member)
        for p in inspect.signature(member).parameters.values():
            annotation = hints.get(p.name, p.annotation)
            if CONFIG_NAMES.search(_text(annotation)):
                found.add(f"{where}({p.name})")
        returned = CONFIG_NAMES.search(_text(hints.get("return", "")))
        if returned:
            found.add(f"{where} -> {returned.group(1)}")
    return found


def source_violations(module: str, source: str) -> set[str]:
    """``module: OmegaConf`` (a config name used), ``module: import omegaconf`` (or hydra), and
    ``module: def f(cfg)`` for a parameter named cfg left untyped or Any in any function, nested too."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            roots = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found |= {f"{module}: import {r.split('.')[0]}" for r in roots if r.split(".")[0] in ("omegaconf", "hydra")}
            if isinstance(node, ast.ImportFrom):
                found |= {f"{module}: {a.name}" for a in node.names if a.name in CONFIG_USE}
        elif isinstance(node, ast.Name) and node.id in CONFIG_USE:
            found.add(f"{module}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in CONFIG_USE:
            found.add(f"{module}: {node.attr}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if _untyped_cfg(a.arg, None if a.annotation is None else ast.unparse(a.annotation)):
                    found.add(f"{module}: def {getattr(node, 'name', 'lambda')}({a.arg})")
    return found


def config_violations(modules: list[str]) -> set[str]:
    found = set()
    for name in modules:
        module = importlib.import_module(name)
        found |= signature_violations(module) | source_violations(name, Path(module.__file__).read_text())
    return found


def test_no_config_objects_below_the_entry_points() -> None:
    found = config_violations(library_modules())
    assert not found - ALLOWED_CONFIG_USE, "config objects below detector/tasks/:\n" + "\n".join(
        sorted(found - ALLOWED_CONFIG_USE)
    )
    assert not ALLOWED_CONFIG_USE - found, "fixed, delete from ALLOWED_CONFIG_USE:\n" + "\n".join(
        sorted(ALLOWED_CONFIG_USE - found)
    )


SYNTHETIC = """
from __future__ import annotations
from typing import Any
import omegaconf
from omegaconf import DictConfig

def build(cfg: DictConfig, size: int) -> int:
    return size

def loose(cfg, model_cfg: Any, other_cfg: dict) -> None:
    def inner(cfg) -> None: ...

class Thing:
    node: "omegaconf.ListConfig"
    def method(self, node: "ListConfig | None") -> None: ...
    @staticmethod
    def make(x: int) -> DictConfig: ...

def clean(size: int, name: str = "x") -> int:
    return size
"""


def test_the_config_check_catches_a_deliberate_violation(tmp_path, monkeypatch) -> None:
    path = tmp_path / "detector_synthetic.py"
    path.write_text(SYNTHETIC)
    spec = importlib.util.spec_from_file_location("detector_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "detector_synthetic", module)  # removed again after the test
    spec.loader.exec_module(module)
    assert signature_violations(module) == {
        "detector_synthetic.build(cfg)",
        "detector_synthetic.Thing.node",
        "detector_synthetic.Thing.method(node)",
        "detector_synthetic.Thing.make -> DictConfig",
    }
    assert source_violations("m", SYNTHETIC) == {
        "m: import omegaconf",
        "m: DictConfig",
        "m: def loose(cfg)",
        "m: def loose(model_cfg)",
        "m: def inner(cfg)",
    }
    found = config_violations(["detector_synthetic"])
    assert found and not found & ALLOWED_CONFIG_USE  # none of it allowed: the guard above would fail on it
