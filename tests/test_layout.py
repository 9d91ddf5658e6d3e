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
# The few places allowed one more import (a framework or another impl), each inside a function, and why:
LAZY_EXCEPTIONS = {
    # the catalogue sources are the frameworks' own downloaders, used only when asked for
    "common/catalogue.py": {"tensorflow_datasets", "torchvision"},
    # pytorch/examples' .pth files are read only with torch.load(weights_only=True), only when asked
    "common/convert.py": {"torch"},
    # Keras 3 has no backend-neutral gradient; this module takes it from the running backend
    "keras_impl/gradients.py": {"jax", "tensorflow", "torch"},
    # Keras has no switch for x64 (JAX), TF32 (all three) or device discovery: the backend sets
    # them on the framework Keras runs on, which is already imported by then
    "keras_impl/backend.py": {"jax", "tensorflow", "torch"},
    # on Keras-JAX, Conv2DTranspose uses jax_impl's transposed convolution, whose gradient XLA CPU
    # computes ~20x faster than that of Keras's own lax.conv_transpose
    "keras_impl/models.py": {"jax_impl"},
}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(top-level packages imported at module level, those imported inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(node) for f in functions for node in ast.walk(f)}
    module_level, lazy = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = {node.module.split(".")[0]}
        else:
            continue
        (lazy if id(node) in inside else module_level).update(found)
    return module_level, lazy


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_their_own_framework(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        module_level, lazy = _imports(path)
        foreign = ((module_level | lazy) & FRAMEWORKS) - ALLOWED[package] - (lazy & LAZY_EXCEPTIONS.get(relative, set()))
        assert not foreign, f"{relative} imports {sorted(foreign)}"
        other_impls = ((module_level | lazy) & (set(ALLOWED) - {"common", package})) - (
            lazy & LAZY_EXCEPTIONS.get(relative, set()))
        assert not other_impls, f"{relative} imports {sorted(other_impls)}"


def test_each_impl_has_the_same_module_and_class_names():
    for package in ("pytorch_impl", "jax_impl", "keras_impl"):
        for module, names in {"models": {"Generator", "Discriminator", "Network"},
                              "backend": {"Backend", "Trainer"}}.items():
            tree = ast.parse((ROOT / package / f"{module}.py").read_text())
            defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
            assert names <= defined, f"{package}/{module}.py lacks {sorted(names - defined)}"
