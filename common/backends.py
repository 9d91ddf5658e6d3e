"""The five backends: what each offers (extras, compilers, precisions), `load_backend`,
which checks every option once, and the `Backend` each framework build implements.

A backend is one framework running one build: `torch` (pytorch_impl), `jax` (jax_impl) and
Keras 3 (keras_impl) on each of its three backends. Keras fixes its backend when it is
first imported, so one process holds at most one Keras backend; `load_backend` sets
`KERAS_BACKEND` before that import and refuses a second, different one.

`common` talks to a framework only through `Backend` and the `Trainer` it makes
(common/trainer.py), with numpy arrays in the canonical layout (images NCHW, values as
float32); each backend converts at its edge.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from common.config import Config
from common.errors import ConfigError
from common.launch import DATA_PARALLEL, NO_DATA_PARALLEL
from common.precision import TRAINING_PRECISIONS
from common.trainer import Trainer

BACKENDS: dict[str, str] = {
    "torch": "pytorch_impl.backend",
    "jax": "jax_impl.backend",
    "keras-tensorflow": "keras_impl.backend",
    "keras-jax": "keras_impl.backend",
    "keras-torch": "keras_impl.backend",
}

# The pip extras each backend needs (pyproject.toml).
EXTRAS = {
    "torch": "torch",
    "jax": "jax",
    "keras-tensorflow": "keras",
    "keras-jax": "keras,jax",
    "keras-torch": "keras,torch",
}

# The packages each backend imports, which its extras install: `installed` looks for them.
PACKAGES = {
    "torch": ("torch",),
    "jax": ("jax", "flax", "optax"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
}

# The precisions of weights and activations the parity suite compares. Training runs in
# float32; float64 exists for the parity suite, where two correct implementations agree to
# ~1e-14 and any larger difference is a real one.
PRECISIONS = ("float32", "float64")

# The compilers a backend offers beyond its default step (None): torch.compile's modes for
# PyTorch, XLA (jit_compile=True) for Keras on TensorFlow. JAX always jits its one step,
# and Keras on JAX always runs under jax.jit. Keras on torch has none: its jit_compile
# (torch.compile of the whole step) fails on this step's optimizer updates (torch 2.14).
COMPILERS: dict[str, tuple[str, ...]] = {
    "torch": ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"),
    "jax": (),
    "keras-tensorflow": ("xla",),
    "keras-jax": (),
    "keras-torch": (),
}


class Backend(Protocol):
    name: str
    precision: str  # one of common.precision.TRAINING_PRECISIONS
    compile: str | None  # one of the backend's COMPILERS, or None: its default step
    layout: str  # "NCHW" or "NHWC": how this framework holds feature maps
    device: str  # "cpu" or "gpu": where this framework runs (its own default device)

    def build(self, config: Config) -> tuple[Any, Any]:
        """The generator and discriminator, initialised from `config.seed` (algorithm.network_seeds)."""

    def trainer(self, config: Config) -> Trainer:
        """G, D (from `build`) and their optimizers, ready to train, with the backend's
        precision and compiler (JAX and Keras compile their default step too)."""

    def run_layers(self, network: Any, inputs: np.ndarray, training: bool = True) -> list[tuple[str, str, np.ndarray]]:
        """Runs a canonical batch through `network` in training (or eval) mode, layer by layer.

        Returns (layer name, framework class name, output in this backend's layout) for
        every layer of the built model, in order.
        """

    def parameters(self, network: Any) -> dict[str, dict[str, np.ndarray]]:
        """Trainable parameters by layer name, then by canonical parameter name.

        Canonical names are PyTorch's: `weight` (a kernel, or a BN scale) and `bias` (a bias,
        or a BN offset). Arrays stay in the framework's own layout.
        """

    def feature_network(self, state: dict[str, np.ndarray]) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`dcgan eval`'s feature network (common/quality/network.py) holding canonical `state`, in
        eval mode, as a function of (N, 1, 28, 28) images in [-1, 1] to (features, logits); in
        float64 at float64, else float32 (each build's features.py)."""


def installed(name: str) -> bool:
    """Whether backend `name`'s packages can be imported here (looked for, not imported)."""
    try:
        return all(importlib.util.find_spec(package) is not None for package in PACKAGES[name])
    except ImportError:  # an import hook that refuses the package
        return False


def load_backend(name: str, precision: str = "float32", compile: str | None = None, devices: int = 1) -> Backend:
    """The backend `name`, building models in `precision` and training with `compile` (one
    of its COMPILERS, or None). Every option is checked here, once, against what the backend
    offers on its device. Keras and JAX take float64 as a process-wide setting (floatx,
    jax_enable_x64), so ask for it in a process of its own."""
    if name not in BACKENDS:
        raise ConfigError("backend", name, "one of " + ", ".join(BACKENDS))
    if precision not in TRAINING_PRECISIONS:
        raise ConfigError("precision", precision, "one of " + ", ".join(TRAINING_PRECISIONS))
    if devices != 1 and name not in DATA_PARALLEL:
        offered = ", ".join(DATA_PARALLEL)
        raise ConfigError("--devices", devices, f"1 on {name}: {NO_DATA_PARALLEL[name]} (data-parallel: {offered})")
    if devices < 1:
        raise ConfigError("--devices", devices, "a positive number of devices")
    if compile is not None and compile not in COMPILERS[name]:
        offered = ", ".join(COMPILERS[name]) or "none beyond its default step"
        raise ConfigError("compile", compile, f"a compiler {name} offers: {offered}")
    if name.startswith("keras-"):
        wanted = name.removeprefix("keras-")
        if "keras" in sys.modules:
            current = sys.modules["keras"].backend.backend()
            if current != wanted:
                raise ConfigError(
                    "backend",
                    name,
                    f"a Keras backend other than keras-{current}, which this process already imported; "
                    "Keras fixes its backend per process, so run it in a new process",
                )
        os.environ["KERAS_BACKEND"] = wanted
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as err:
        extra = EXTRAS[name]
        raise ConfigError(
            "backend",
            name,
            f"an installed framework ({err}); install it with: pip install -e '.[{extra}]'",
        ) from None
    backend = module.Backend(name, precision, compile, devices)
    if TRAINING_PRECISIONS[precision].tf32 and backend.device != "gpu":
        raise ConfigError(
            "precision",
            precision,
            f"float32 or bf16 on {name}'s device ({backend.device}); "
            "TF32 is a tensor-core format of NVIDIA GPUs (Ampere or newer)",
        )
    return backend


def to_canonical_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A per-example shape from a backend's layout to CHW (vectors are unchanged)."""
    if layout == "NHWC" and len(shape) == 3:
        h, w, c = shape
        return (c, h, w)
    return tuple(shape)
