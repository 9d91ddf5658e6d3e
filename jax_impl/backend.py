"""JAX/Flax NNX's side of the common backend interface (see common/backends.py and common/trainer.py).

Precision (what each means is common/precision.py's) is a process-wide JAX setting here:
float64 needs jax_enable_x64, and the precision of float32 convolutions and matmuls on a GPU
(TF32 by JAX's default) is jax_default_matmul_precision, set to "highest" (strict float32)
unless TF32 is allowed. Mixed precision ("bf16") is Flax's: modules with dtype bfloat16 and
param_dtype float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common import canonical, trainer
from common.algorithm import network_seeds
from common.canonical import nchw_to_nhwc, nhwc_to_nchw
from common.config import Config
from common.precision import TRAINING_PRECISIONS
from jax_impl import features
from jax_impl.distributed import DATA_AXIS, data_parallel_mesh, global_array, local_copy
from jax_impl.layout import CANONICAL_NAMES, from_canonical, native_name, to_canonical
from jax_impl.models import BatchNorm, Discriminator, Generator
from jax_impl.step import d_loss, g_loss, train_step

MOMENTS = {"mu": "exp_avg", "nu": "exp_avg_sq"}  # optax's Adam moments -> canonical names


def set_bn_groups(network: nnx.Module, groups: int) -> None:
    """Every BatchNorm of `network` normalises each 1/groups of its batch on its own: on a mesh
    of `groups` devices, each device's shard (jax_impl/models.py's BatchNorm)."""
    for _, module in nnx.iter_graph(network):
        if isinstance(module, BatchNorm):
            module.groups = groups


class Backend:
    layout = "NHWC"

    def __init__(self, name: str = "jax", precision: str = "float32", compile: str | None = None, devices: int = 1):
        self.devices = devices
        self.mesh = data_parallel_mesh(devices) if devices > 1 else None
        chosen = TRAINING_PRECISIONS[precision]
        if chosen.store == "float64":
            jax.config.update("jax_enable_x64", True)  # without it JAX silently computes float64 in float32
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if chosen.tf32 else "highest")
        self.name, self.precision, self.compile = name, precision, compile  # the step is always nnx.jit-compiled
        # Flax's mixed precision: modules compute in `dtype` and keep parameters in `param_dtype`
        self.dtype, self.param_dtype = getattr(jnp, chosen.compute), getattr(jnp, chosen.store)
        self.device = "gpu" if jax.default_backend() == "gpu" else "cpu"

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        g_seed, d_seed = network_seeds(config)
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        # Initialised under jit, as Flax's examples create their models: one compiled program,
        # where eager initialisation compiles and runs every initializer op on its own. The
        # keys are arguments, not constants, so one program (and JAX's cache entry) serves
        # every seed.
        @nnx.jit
        def build(g_key: jax.Array, d_key: jax.Array) -> tuple[Generator, Discriminator]:
            return (
                Generator(config.model, rngs=nnx.Rngs(g_key), **dtypes),
                Discriminator(config.model, rngs=nnx.Rngs(d_key), **dtypes),
            )

        generator, discriminator = build(jax.random.key(g_seed), jax.random.key(d_seed))
        if config.model.bn_statistics == "per_device":  # each device's shard normalised on its own
            for network in (generator, discriminator):
                set_bn_groups(network, self.devices)
        return generator, discriminator

    def trainer(self, config: Config) -> Trainer:
        return Trainer(config, *self.build(config), dtype=self.param_dtype, mesh=self.mesh)

    def run_layers(self, network, inputs: np.ndarray, training: bool = True) -> list[tuple[str, str, np.ndarray]]:
        network.train() if training else network.eval()
        x = jnp.asarray(nchw_to_nhwc(inputs), dtype=self.param_dtype)
        outputs = []
        for name in network.layer_names:
            module = getattr(network, name)
            x = _call(module, x)
            outputs.append((name, type(module).__name__, np.asarray(x)))
        network.train()
        return outputs

    def parameters(self, network) -> dict[str, dict[str, np.ndarray]]:
        return {
            name: {
                CANONICAL_NAMES[path[-1]]: np.asarray(variable[...])
                for path, variable in nnx.to_flat_state(nnx.state(getattr(network, name), nnx.Param))
            }
            for name in network.layer_names
        }

    def feature_network(self, state: dict[str, np.ndarray]):
        """`dcgan eval`'s feature network holding `state` (jax_impl/features.py; common.backends.Backend)."""
        model = features.load(state, "float64" if self.precision == "float64" else "float32")
        return functools.partial(features.features_and_logits, model)


class Trainer(trainer.Trainer):
    """G, D and their Adam optimizers; `train_step` runs jax_impl/step.py.

    With several processes (jax_impl/distributed.py) every process runs each step over the
    global Mesh; the state is replicated, so each reads its own copy of it (`local_copy`)."""

    def __init__(
        self,
        config: Config,
        generator: Generator,
        discriminator: Discriminator,
        dtype=jnp.float32,
        mesh: Mesh | None = None,
    ):
        o = config.optim
        self.config, self.dtype, self.mesh = config, dtype, mesh
        self.generator, self.discriminator = generator, discriminator
        # G's moving average (common/algorithm.py): a copy of G, in eval mode, that no
        # optimizer sees; train_step updates it after each G update.
        self.ema_generator = nnx.clone(generator) if o.ema else None
        if self.ema_generator is not None:
            self.ema_generator.eval()
        adam = dict(b1=o.beta1, b2=o.beta2, eps=o.eps)
        self.g_optimizer = nnx.Optimizer(generator, optax.adam(o.lr_g, **adam), wrt=nnx.Param)
        self.d_optimizer = nnx.Optimizer(discriminator, optax.adam(o.lr_d, **adam), wrt=nnx.Param)
        self._replicate()

    @property
    def writer(self) -> bool:
        return jax.process_index() == 0

    def should_stop(self, requested: int | None) -> int | None:
        """With several processes, the highest signal any of them received, so all stop after
        the same iteration (the steps are collectives every process must run)."""
        if jax.process_count() == 1:
            return requested
        return int(multihost_utils.process_allgather(np.int32(requested or 0)).max()) or None

    def _replicate(self) -> None:
        """Data parallelism: every device of the mesh holds the whole state. The jitted step
        then runs SPMD on batches sharded along their batch axis; XLA adds the all-reduces,
        so gradients, losses and BN's batch statistics are those of the global batch, and the
        updated state comes out replicated again."""
        if self.mesh is not None:
            replicated = NamedSharding(self.mesh, PartitionSpec())
            modules = (self.generator, self.discriminator, self.g_optimizer, self.d_optimizer, self.ema_generator)
            for module in (m for m in modules if m is not None):
                nnx.update(module, jax.tree.map(lambda x: global_array(x, replicated), nnx.state(module)))

    def _array(self, array: np.ndarray | None, images: bool = False, batch_axis: int | None = None):
        """A canonical batch on the device at this trainer's precision; images (..., C, H, W)
        become (..., H, W, C). With a mesh, `batch_axis` is split over its devices; each process
        holds the whole global batch and hands JAX its own devices' rows of it."""
        if array is None:
            return None
        array = np.asarray(np.moveaxis(array, -3, -1) if images else array, dtype=self.dtype)
        if self.mesh is None or batch_axis is None:
            return jnp.asarray(array)
        spec = [None] * array.ndim
        spec[batch_axis] = DATA_AXIS
        return global_array(array, NamedSharding(self.mesh, PartitionSpec(*spec)))

    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> tuple:
        # reals (k, N, H, W, C) and z_d (k, N, latent) split along N; z_g (N, latent) too
        reals = self._array(reals, images=True, batch_axis=1)
        return reals, self._array(z_d, batch_axis=1), self._array(z_g, batch_axis=0)

    def step(self, batch: tuple) -> dict[str, jax.Array]:
        return train_step(
            self.generator,
            self.discriminator,
            self.g_optimizer,
            self.d_optimizer,
            *batch,
            self.config.optim.real_label,
            self.ema_generator,
            ema_decay=self.config.optim.ema,
        )

    def synchronize(self, outputs) -> None:
        jax.block_until_ready(outputs)

    def sample(self, z: np.ndarray, averaged: bool = False) -> np.ndarray:
        """G (or its moving average) in eval mode; with several processes, this process's copy
        on its first device, so that process 0 samples alone."""
        generator = self.ema_generator if averaged else self.generator
        if jax.process_count() > 1:
            graph, state = nnx.split(generator)
            generator = nnx.merge(graph, jax.tree.map(local_copy, state))
        generator.eval()  # BN normalises with its running statistics
        try:
            return nhwc_to_nchw(np.asarray(generator(self._array(z)))).astype(np.float32)
        finally:
            if not averaged:  # the average stays in eval mode
                generator.train()

    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """See common/trainer.py: canonical gradients of loss_D (D's) and loss_G (G's)."""
        real, z, label = self._array(real, images=True), self._array(z), self.config.optim.real_label
        d_grads, g_grads = _gradients(self.generator, self.discriminator, real, z, label)
        grads = {}
        for role, state in (("discriminator", d_grads), ("generator", g_grads)):
            entries = self._parameter_entries(role)
            for path, value in nnx.to_flat_state(state):
                entry = entries[path]
                grads[entry.key] = to_canonical(entry.layer.kind, entry.name, value[...])
        return grads

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""
        for role, network, optimizer in self._roles():
            entries = self._parameter_entries(role)
            flat = []
            for path, variable in nnx.to_flat_state(nnx.state(network, nnx.Param)):
                entry = entries[path]
                flat.append(
                    (
                        path,
                        variable.replace(from_canonical(entry.layer.kind, entry.name, grads[entry.key], variable[...])),
                    )
                )
            _update(optimizer, network, nnx.from_flat_state(flat))

    def _roles(self):
        return (
            ("generator", self.generator, self.g_optimizer),
            ("discriminator", self.discriminator, self.d_optimizer),
        )

    def _parameter_entries(self, role: str) -> dict[tuple[str, str], canonical.Entry]:
        """Each parameter's NNX path (layer, attribute) -> its canonical entry."""
        return {_path(entry): entry for entry in canonical.parameters(self.config, role)}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state (common/canonical.py), plus dropout's RNG keys and counts
        under rng.jax.*."""
        arrays = {}
        for role, network, optimizer in self._roles():
            for e in canonical.entries(self.config, role):
                arrays[e.key] = to_canonical(e.layer.kind, e.name, local_copy(_variable(network, e)[...]))
            adam = dict(nnx.to_flat_state(nnx.state(optimizer)))
            arrays[canonical.step_key(role)] = np.array(
                local_copy(adam[("opt_state", 0, "count")][...]), dtype=np.int64
            )
            for path, entry in self._parameter_entries(role).items():
                for field, moment in MOMENTS.items():
                    value = local_copy(adam[("opt_state", 0, field, *path)][...])
                    arrays[canonical.moment_key(role, moment, entry)] = to_canonical(
                        entry.layer.kind, entry.name, value
                    )
            for path, variable in nnx.to_flat_state(nnx.state(network, nnx.RngState)):
                value = local_copy(variable[...])
                if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
                    value = jax.random.key_data(value)  # a typed key has no numpy form; its raw bits do
                arrays[_rng_key(role, path)] = np.asarray(value)
        if self.ema_generator is not None:
            for e in canonical.ema_entries(self.config):
                value = local_copy(_variable(self.ema_generator, e)[...])
                arrays[e.key] = to_canonical(e.layer.kind, e.name, value)
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads a canonical state into this trainer's own modules and optimizers; their
        structure, and so the compiled step, stays as built. Without optimizer keys Adam starts
        afresh; rng.jax.* keys, where present, restore dropout's streams."""
        if not canonical.has_optimizer(arrays):
            arrays = {**arrays, **canonical.fresh_optimizer(self.config)}
        for role, network, optimizer in self._roles():
            for e in canonical.entries(self.config, role):
                variable = _variable(network, e)
                variable[...] = from_canonical(e.layer.kind, e.name, arrays[e.key], variable[...])
            adam = []
            step = arrays[canonical.step_key(role)]
            entries = self._parameter_entries(role)
            for path, variable in nnx.to_flat_state(nnx.state(optimizer)):
                if path[:2] == ("opt_state", 0) and path[2] in MOMENTS:
                    entry = entries[path[3:]]
                    moment = arrays[canonical.moment_key(role, MOMENTS[path[2]], entry)]
                    value = from_canonical(entry.layer.kind, entry.name, moment, variable[...])
                else:  # Adam's count and the optimizer's step: both count updates
                    value = jnp.asarray(step, dtype=variable.dtype)
                adam.append((path, value))
            nnx.update(optimizer, nnx.from_flat_state(adam))
            restored = []
            for path, variable in nnx.to_flat_state(nnx.state(network, nnx.RngState)):
                key = _rng_key(role, path)
                if key not in arrays:
                    continue
                value = jnp.asarray(arrays[key])
                if jax.dtypes.issubdtype(variable.dtype, jax.dtypes.prng_key):
                    value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(variable[...]))
                restored.append((path, value))
            if restored:
                nnx.update(network, nnx.from_flat_state(restored))
        if self.ema_generator is not None:
            averaged = canonical.ema_arrays(arrays, self.config)
            for e in canonical.ema_entries(self.config):
                variable = _variable(self.ema_generator, e)
                variable[...] = from_canonical(e.layer.kind, e.name, averaged[e.key], variable[...])
        self._replicate()


# Outside the training step, jitted too: run eagerly, JAX compiles and runs each op on its own.
@nnx.jit
def _call(module: nnx.Module, x: jax.Array) -> jax.Array:
    """One layer's forward pass (its BN statistics and dropout stream advance as in eager mode)."""
    return module(x)


@nnx.jit
def _gradients(generator: Generator, discriminator: Discriminator, real: jax.Array, z: jax.Array, label: float):
    """D's gradient of loss_D on (real, G(z)) and G's of loss_G through D, as NNX states."""
    fake = jax.lax.stop_gradient(generator(z))
    d_grads = nnx.grad(lambda d: d_loss(d, real, fake, label)[0])(discriminator)
    g_grads = nnx.grad(lambda g, d: g_loss(d, g(z))[0])(generator, discriminator)
    return d_grads, g_grads


@nnx.jit
def _update(optimizer: nnx.Optimizer, network: nnx.Module, grads: nnx.State) -> None:
    optimizer.update(network, grads)


def _path(entry: canonical.Entry) -> tuple[str, str]:
    """The NNX path (layer, attribute) of a canonical entry in its network: ("convt2", "kernel")."""
    return entry.layer.name, native_name(entry.layer.kind, entry.name)


def _variable(network: nnx.Module, entry: canonical.Entry) -> nnx.Variable:
    """The Flax variable holding a canonical entry."""
    layer, attribute = _path(entry)
    return getattr(getattr(network, layer), attribute)


def _rng_key(role: str, path: tuple) -> str:
    """The canonical key of one of Flax's RNG variables: rng.jax.<role>.<its NNX path>."""
    return ".".join(("rng.jax", role, *map(str, path)))
