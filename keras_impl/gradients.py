"""Gradients of a function of tensor values, and its compilation: the one place keras_impl
touches its backend.

Keras 3 has no backend-neutral gradient API: each backend's own `Trainer.train_step`
calls its framework directly (`jax.value_and_grad`, `tf.GradientTape`, `loss.backward()`).
The GAN's `train_step` needs gradients of two different losses with respect to two
different networks, so it asks this module, which gives all three backends the contract
of `jax.value_and_grad(fn, has_aux=True)`. Each framework is imported lazily, because
only the one Keras runs on is installed or importable in a given process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

LossFn = Callable[..., tuple[Any, Any]]  # fn(values, *args) -> (scalar loss, aux)


def value_and_grad(fn: LossFn) -> Callable[..., tuple[tuple[Any, Any], list[Any]]]:
    """``fn(values, *args) -> (loss, aux)`` becomes ``f(values, *args) -> ((loss, aux), grads)``,
    where `values` is a list of tensors and `grads` are d loss / d values, in that order.
    Nothing but `values` is differentiated; aux comes back with no gradient history."""
    return {"jax": _jax, "tensorflow": _tensorflow, "torch": _torch}[keras.backend.backend()](fn)


def jit(fn: Callable) -> Callable:
    """A pure function of tensors, compiled as a whole on JAX (jax.jit), which otherwise
    compiles and runs each op on its own; TensorFlow's and torch's eager ops are ready-made
    kernels, so there `fn` runs as it is. For computations outside Keras's own compiled step."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def apply(optimizer: keras.optimizers.Optimizer, grads: list, variables: list) -> None:
    """optimizer.apply(grads, variables), for updates outside Keras's own compiled step. On JAX
    it runs as one compiled program (stateless_apply under jax.jit), where Keras's apply would
    compile and run each op of each variable's update on its own; TensorFlow refuses
    stateless_apply, and torch's eager ops gain nothing from it, so there `apply` runs as it is."""
    if keras.backend.backend() != "jax":
        optimizer.apply(grads, variables)
        return
    import jax

    if not optimizer.built:
        optimizer.build(variables)
    new_variables, new_state = jax.jit(optimizer.stateless_apply)(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables]
    )
    for variable, value in zip([*variables, *optimizer.variables], [*new_variables, *new_state]):
        variable.assign(value)


def _jax(fn: LossFn):
    import jax

    return jax.value_and_grad(fn, has_aux=True)


def _tensorflow(fn: LossFn):
    import tensorflow as tf

    def value_and_grad_fn(values, *args):
        values = [tf.convert_to_tensor(v) for v in values]  # a snapshot, not the live tf.Variable
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(values)
            loss, aux = fn(values, *args)
        return (loss, aux), tape.gradient(loss, values)

    return value_and_grad_fn


def _torch(fn: LossFn):
    import torch

    def value_and_grad_fn(values, *args):
        # Fresh leaves, so the gradient is with respect to exactly these values.
        values = [v.detach().requires_grad_() for v in values]
        loss, aux = fn(values, *args)
        grads = torch.autograd.grad(loss, values)
        return (loss.detach(), keras.tree.map_structure(torch.Tensor.detach, aux)), list(grads)

    return value_and_grad_fn
