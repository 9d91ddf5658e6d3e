"""The five backends, and the small interface each framework build implements.

A backend is one framework running one build: `torch` (pytorch_impl), `jax` (jax_impl) and
Keras 3 (keras_impl) on each of its three backends. Keras fixes its backend when it is
first imported, so one process holds at most one Keras backend; `load_backend` sets
`KERAS_BACKEND` before that import and refuses a second, different one.

`common` talks to a framework only through this interface, with numpy arrays in the
canonical layout (images NCHW, values as float32); each backend converts at its edge.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Protocol

import numpy as np

from common.config import Config
from common.errors import ConfigError

BACKENDS: dict[str, str] = {
    "torch": "pytorch_impl.backend",
    "jax": "jax_impl.backend",
    "keras-tensorflow": "keras_impl.backend",
    "keras-jax": "keras_impl.backend",
    "keras-torch": "keras_impl.backend",
}

# The pip extras each backend needs (pyproject.toml).
EXTRAS = {"torch": "torch", "jax": "jax", "keras-tensorflow": "keras", "keras-jax": "keras,jax", "keras-torch": "keras,torch"}

# Training runs in float32; float64 exists for the parity suite, where two correct
# implementations agree to ~1e-11 and any larger difference is a real one.
PRECISIONS = ("float32", "float64")


class Backend(Protocol):
    name: str
    precision: str  # "float32" | "float64": the dtype of every weight and activation it builds
    layout: str  # "NCHW" or "NHWC": how this framework holds feature maps

    def build(self, config: Config) -> tuple[Any, Any]:
        """The generator and discriminator, initialised from `config.seed`."""

    def trainer(self, config: Config, compile: bool = False) -> Trainer:
        """G, D (from `build`) and their optimizers, ready to train. `compile` asks for the
        framework's optional compiler where it has one (torch.compile); JAX and Keras always
        compile their step."""

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


class Trainer(Protocol):
    """What the shared loop (common/train.py) drives: one framework's models and optimizers.

    Arrays cross this interface in the canonical form: batches NCHW, states and gradients as
    common/canonical.py names and lays them out; each trainer casts to its own precision.
    """

    generator: Any  # the framework's models, as `Backend.build` made them
    discriminator: Any

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, Any]:
        """One iteration of common/algorithm.py.

        reals: (k, N, C, H, W) float32 in [-1, 1]; z_d: (k, N, latent) float32; z_g: (N, latent),
        or None when G reuses the last D step's fakes. Returns the scalars named in
        common.algorithm.METRICS as framework scalars (`float()` reads each), so the step
        itself never waits for the host.
        """

    def sample(self, z: np.ndarray) -> np.ndarray:
        """G in eval mode on z (n, latent): images (n, C, H, W) float32 in [-1, 1]."""

    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """d loss_D / d D's parameters (real batch and G(z), detached) and d loss_G / d G's
        parameters (through D), at the current state, under canonical keys; only BN running
        statistics change, as in any train-mode forward pass."""

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state: everything a resumed run needs to continue exactly (weights,
        BN statistics, Adam's moments and step counts), plus the framework's own RNG state
        under rng.<framework>.*, so a resume on the same backend is bit-identical."""

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads a canonical state written by any backend (validated by the caller against the
        config). Without optimizer keys Adam starts afresh; a framework's RNG state is read
        only by that framework."""


def load_backend(name: str, precision: str = "float32") -> Backend:
    """The backend `name`, building models in `precision`. Keras and JAX take float64 as a
    process-wide setting (floatx, jax_enable_x64), so ask for it in a process of its own."""
    if name not in BACKENDS:
        raise ConfigError("backend", name, "one of " + ", ".join(BACKENDS))
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, "one of " + ", ".join(PRECISIONS))
    if name.startswith("keras-"):
        wanted = name.removeprefix("keras-")
        if "keras" in sys.modules:
            current = sys.modules["keras"].backend.backend()
            if current != wanted:
                raise ConfigError(
                    "backend", name,
                    f"a Keras backend other than keras-{current}, which this process already imported; "
                    "Keras fixes its backend per process, so run it in a new process",
                )
        os.environ["KERAS_BACKEND"] = wanted
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as err:
        extra = EXTRAS[name]
        raise ConfigError(
            "backend", name,
            f"an installed framework ({err}); install it with: pip install -e '.[{extra}]'",
        ) from None
    return module.Backend(name, precision)


def to_canonical_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A per-example shape from a backend's layout to CHW (vectors are unchanged)."""
    if layout == "NHWC" and len(shape) == 3:
        h, w, c = shape
        return (c, h, w)
    return tuple(shape)
