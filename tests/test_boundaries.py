"""The project's boundaries and names: `common` imports no deep-learning framework and
nothing above it (`benchmarks`), each `*_impl` imports only its own framework (read from the
source, not from sys.modules, which would also count what the frameworks import themselves),
and every `*_impl` has the same modules, classes and functions under the same names."""

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
    # on Keras-JAX, Conv2DTranspose uses jax_impl's transposed convolution, whose gradient XLA's CPU
    # backend computes far faster than that of Keras's own lax.conv_transpose (docs/benchmarks.md)
    "keras_impl/layers.py": {"jax_impl"},
    # data parallelism on Keras-TensorFlow is tf.distribute's MirroredStrategy, which Keras 3 wraps no API around
    "keras_impl/distributed.py": {"tensorflow"},
}
# Modules for one Keras backend alone, which import its framework at module level; each is
# imported only inside the function that runs on that backend (layers.py), so no other
# backend's process imports it.
BACKEND_MODULES = {
    # on Keras-torch, convolutions and BN through PyTorch on channels-last views, without
    # Keras's layout copies (docs/benchmarks.md)
    "keras_impl/on_torch.py": {"torch"},
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
        foreign = (
            ((module_level | lazy) & FRAMEWORKS)
            - ALLOWED[package]
            - (lazy & LAZY_EXCEPTIONS.get(relative, set()))
            - BACKEND_MODULES.get(relative, set())
        )
        assert not foreign, f"{relative} imports {sorted(foreign)}"
        other_impls = ((module_level | lazy) & (set(ALLOWED) - {"common", package})) - (
            lazy & LAZY_EXCEPTIONS.get(relative, set())
        )
        assert not other_impls, f"{relative} imports {sorted(other_impls)}"
        above = (module_level | lazy) & {"benchmarks", "tests", "docs"}
        assert not above, f"{relative} imports {sorted(above)}, which sit above it"


def _module_level_imports(path: Path) -> set[str]:
    """Dotted modules imported outside any function (`from a import b` counts as a.b too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in tree.body:  # module level, including under `if`/`try`
        for inner in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(inner, ast.Import):
                found |= {alias.name for alias in inner.names}
            elif isinstance(inner, ast.ImportFrom) and inner.module:
                found |= {inner.module} | {f"{inner.module}.{alias.name}" for alias in inner.names}
    return found


@pytest.mark.parametrize("module", list(BACKEND_MODULES))
def test_backend_modules_are_imported_only_inside_functions(module):
    dotted = module.removesuffix(".py").replace("/", ".")
    for path in sorted(ROOT.glob("*_impl/*.py")) + sorted(ROOT.glob("common/**/*.py")):
        assert dotted not in _module_level_imports(path), f"{path.relative_to(ROOT)} imports {dotted} at module level"


# module -> the classes and functions every *_impl defines in it, each with the same arguments
SAME_NAMES = {
    "models": {"Generator", "Discriminator", "Network"},
    "backend": {"Backend", "Trainer"},
    "step": {"train_step", "d_step", "g_step", "d_loss", "g_loss", "update_ema"},
    "layout": {"native_name", "to_canonical", "from_canonical"},
    "distributed": set(),  # --devices N: each framework's own engine, so no name is shared but the module's
    "features": {"load", "features_and_logits"},  # `dcgan eval`'s feature network (common/quality/network.py)
}
SAME_SIGNATURES = {
    "step": {"update_ema"},  # G's moving average (common/algorithm.py): (ema_generator, generator, decay)
    "layout": {"native_name", "to_canonical", "from_canonical"},
    "features": {"load", "features_and_logits"},
}
IMPLS = ("pytorch_impl", "jax_impl", "keras_impl")


def _definitions(package: str, module: str) -> dict[str, ast.AST]:
    tree = ast.parse((ROOT / package / f"{module}.py").read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}


@pytest.mark.parametrize("module", list(SAME_NAMES))
def test_each_impl_has_the_same_modules_and_names(module):
    for package in IMPLS:
        defined = _definitions(package, module)
        assert SAME_NAMES[module] <= set(defined), (
            f"{package}/{module}.py lacks {sorted(SAME_NAMES[module] - set(defined))}"
        )


@pytest.mark.parametrize("module", list(SAME_SIGNATURES))
def test_each_impl_gives_the_same_functions_the_same_arguments(module):
    for name in SAME_SIGNATURES[module]:
        arguments = {package: [a.arg for a in _definitions(package, module)[name].args.args] for package in IMPLS}
        assert len({tuple(a) for a in arguments.values()}) == 1, f"{module}.{name} differs: {arguments}"
