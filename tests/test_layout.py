"""The design card's boundaries: `common` imports no deep-learning framework, and each
`*_impl` imports only its own framework (read from the source, not from sys.modules, which
would also count what the frameworks import themselves)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"torch", "torchvision", "jax", "jaxlib", "flax", "optax", "tensorflow", "tensorflow_datasets", "keras"}
ALLOWED = {
    "common": set(),
    "pytorch_impl": {"torch", "torchvision"},
    "jax_impl": {"jax", "jaxlib", "flax", "optax"},
    "keras_impl": {"keras"},
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_their_own_framework(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    for path in files:
        foreign = (_imported_top_levels(path) & FRAMEWORKS) - ALLOWED[package]
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"
        other_impls = _imported_top_levels(path) & (set(ALLOWED) - {"common", package})
        assert not other_impls, f"{path.relative_to(ROOT)} imports {sorted(other_impls)}"


def test_each_impl_has_the_same_module_and_class_names():
    for package in ("pytorch_impl", "jax_impl", "keras_impl"):
        for module, names in {"models": {"Generator", "Discriminator", "Network"}, "backend": {"Backend"}}.items():
            tree = ast.parse((ROOT / package / f"{module}.py").read_text())
            defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
            assert names <= defined, f"{package}/{module}.py lacks {sorted(names - defined)}"
