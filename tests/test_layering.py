"""The packages depend on each other one way (docs/architecture.md):

    base -> search_spaces -> hwsearch.pruning -> costmodels -> hwsearch.search -> reports, jobs, CLI

A module may import its own layer and the layers before it, never a later one. Checked two ways: every
``import`` statement of every module (including imports inside functions and ``TYPE_CHECKING`` blocks),
and each package's modules imported alone in a fresh interpreter, whose ``sys.modules`` must hold
nothing of a later layer.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The layers, first to last: each lists the module prefixes it owns.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("hwsearch.errors", "hwsearch.registry", "hwsearch.atomic", "hwsearch.interrupts", "hwsearch.heap",
              "hwsearch.progress", "hwsearch.devices", "hwsearch.data")),
    ("search_spaces", ("search_spaces",)),
    ("pruning", ("hwsearch.pruning",)),
    ("costmodels", ("costmodels",)),
    ("search", ("hwsearch.search", "hwsearch.study", "hwsearch.checkpoints", "hwsearch.loading")),
    ("outputs", ("hwsearch.reports", "hwsearch.runs", "hwsearch.comparison", "hwsearch.train", "hwsearch.finetune",
                 "hwsearch.testing", "hwsearch.commands", "hwsearch.cli")),
)
PACKAGES = ("hwsearch", "search_spaces", "costmodels")


def _owner(module: str) -> str | None:
    """The package prefix of LAYERS owning ``module`` (the longest that matches; None: none does)."""
    matches = [p for _, prefixes in LAYERS for p in prefixes if module == p or module.startswith(p + ".")]
    return max(matches, key=len, default=None)


def layer_of(module: str) -> int | None:
    """Index of the layer owning ``module`` (None: not a project module, or the lazy ``hwsearch`` root)."""
    owner = _owner(module)
    return None if owner is None else next(i for i, (_, prefixes) in enumerate(LAYERS) if owner in prefixes)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> list[tuple[str, Path]]:
    return sorted((_module_name(p), p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every project module ``path`` imports, with its line (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join([*pkg, base] if base else pkg)
            # ``from pkg import sub`` may name a submodule: count it as ``pkg.sub`` when one exists
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub if layer_of(sub) is not None and _exists(sub) else base, node.lineno))
    return [(name, line) for name, line in out if name.split(".")[0] in PACKAGES]


def _exists(module: str) -> bool:
    rel = ROOT.joinpath(*module.split("."))
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def test_every_module_has_a_layer() -> None:
    missing = [m for m, _ in _modules() if m != "hwsearch" and layer_of(m) is None]
    assert not missing, f"modules in no layer of tests/test_layering.py::LAYERS: {missing}"


def test_imports_run_one_way() -> None:
    """No import statement (at any depth) reaches a later layer."""
    wrong = []
    for module, path in _modules():
        here = layer_of(module)
        if here is None:
            continue
        for target, line in _imports(path, module):
            there = layer_of(target)
            if there is not None and there > here:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {LAYERS[here][0]} module imports "
                             f"{target} ({LAYERS[there][0]})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(set(wrong)))


def test_packages_meet_through_public_names() -> None:
    """A module reaches another package only through its public modules, never a ``_private`` one."""
    private = []
    for module, path in _modules():
        for target, line in _imports(path, module):
            owner = _owner(target)
            if owner is None or module == owner or module.startswith(owner + "."):
                continue
            if any(part.startswith("_") for part in target[len(owner):].split(".") if part):
                private.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {target}")
    assert not private, "private modules of other packages imported:\n" + "\n".join(sorted(set(private)))


def test_layering_catches_a_backward_import(tmp_path: Path) -> None:
    """The checker itself: a search_spaces module importing the search is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from hwsearch.search.loop import run_strategy\n    from . import _registry\n")
    found = _imports(bad, "search_spaces.bad")
    assert ("hwsearch.search.loop", 2) in found
    assert layer_of("hwsearch.search.loop") > layer_of("search_spaces.bad")  # type: ignore[operator]
    assert layer_of("hwsearch.pruning._engine") == 2 and layer_of("hwsearch.errors") == 0
    assert _owner("hwsearch.pruning._tokens") == "hwsearch.pruning" and _owner("costmodels._spec") == "costmodels"


_PROBE = """
import importlib, json, pkgutil, sys
names = []
for pkg in {packages!r}:
    mod = importlib.import_module(pkg)
    names.append(pkg)
    for info in pkgutil.walk_packages(getattr(mod, "__path__", []), pkg + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({{"imported": names, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("hwsearch", "search_spaces", "costmodels"))}}))
"""


@pytest.mark.parametrize("layer", ["search_spaces", "pruning", "costmodels", "search"])
def test_a_layer_alone_loads_nothing_later(layer: str) -> None:
    """Import every module of one layer in a fresh interpreter: nothing of a later layer is loaded."""
    index = [name for name, _ in LAYERS].index(layer)
    packages = [p for p in LAYERS[index][1]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(packages=packages)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["imported"]) > 3  # the walk found the package's modules
    later = [m for m in report["loaded"] if (layer_of(m) or 0) > index]
    assert not later, f"importing {layer} alone loaded later layers: {later}"
