"""One training iteration in Keras 3: common/algorithm.py's algorithm, function for function
as pytorch_impl/step.py and jax_impl/step.py write it, on Keras's three backends.

Written as Keras's own train steps are: forward passes with `stateless_call`, so that a loss
is a function of the values it is differentiated by; gradients from keras_impl/gradients.py;
updates with `optimizer.apply` and `Variable.assign`. It does not use
`optimizer.stateless_apply`, because the TensorFlow backend's optimizer refuses it (it needs
live tf.Variables, for tf.distribute). On JAX, `GAN.train_step` (keras_impl/gan.py) runs this
inside a `keras.StatelessScope`, which makes it a pure function of the training state, as
jit needs.
"""

from __future__ import annotations

from functools import partial

import keras
from keras import ops

from keras_impl import distributed
from keras_impl.gradients import value_and_grad
from keras_impl.layers import mean


def bce(logits, target: float):
    """Mean binary cross-entropy on logits against one target for the whole batch."""
    return mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True))


def at_least_float32(logits):
    """bfloat16 logits (under mixed_bfloat16) as float32, so the losses are float32, as
    Keras's mixed-precision guide asks of a model's outputs; float32 and float64 stay."""
    return ops.cast(logits, "float32") if keras.backend.standardize_dtype(logits.dtype) == "bfloat16" else logits


def d_loss(discriminator: keras.Model, d_trainable, d_state, real, fake, real_label: float):
    """BCE of D on a real batch (target real_label) plus on a fake batch (target 0), as two
    passes, so that BN normalises each batch on its own; also D's new state, D(x) and D(G(z))."""
    real_logits, d_state = discriminator.stateless_call(d_trainable, d_state, real, training=True)
    fake_logits, d_state = discriminator.stateless_call(d_trainable, d_state, fake, training=True)
    real_logits, fake_logits = at_least_float32(real_logits), at_least_float32(fake_logits)
    loss = bce(real_logits, real_label) + bce(fake_logits, 0.0)
    return loss, (d_state, mean(ops.sigmoid(real_logits)), mean(ops.sigmoid(fake_logits)))


def g_loss(generator: keras.Model, discriminator: keras.Model, g_trainable, g_state, d_trainable, d_state, z):
    """The non-saturating generator loss BCE(D(G(z)), 1), through D in train mode; also both
    networks' new states and D(G(z))."""
    fake, g_state = generator.stateless_call(g_trainable, g_state, z, training=True)
    logits, d_state = discriminator.stateless_call(d_trainable, d_state, fake, training=True)
    logits = at_least_float32(logits)
    return bce(logits, 1.0), (g_state, d_state, mean(ops.sigmoid(logits)))


def replica_share(loss_fn):
    """``fn(*args) -> (loss, aux)`` becomes ``fn(*args) -> (loss / R, (loss, aux))``: what each of R
    replicas of a tf.distribute strategy differentiates. In replica context the optimizer SUMS
    the replicas' gradients (MirroredStrategy all-reduces them before applying), so each
    replica's loss, the mean over its shard, is divided by R for the sum to be the gradient of
    the global batch's mean loss, as the TensorFlow guide "Custom training with
    tf.distribute.Strategy" scales it. The unscaled loss is the replica's metric. One replica
    (no strategy, or Keras-JAX, whose step sees the global batch) differentiates the loss itself."""
    replicas, _ = distributed.replica()

    def shared(*args):
        loss, aux = loss_fn(*args)
        return (loss if replicas == 1 else loss / replicas), (loss, aux)

    return shared


def values(variables) -> list:
    """The variables' current values as tensors (under a StatelessScope: the scope's values)."""
    return [ops.convert_to_tensor(v) for v in variables]


def _assign(variables, new_values) -> None:
    for variable, value in zip(variables, new_values):
        variable.assign(value)


def d_step(
    generator: keras.Model, discriminator: keras.Model, d_optimizer, real, z, real_label: float, keep_fake: bool
):
    """One D update on a real batch and G(z). G's BN statistics move for this forward pass
    unless `keep_fake`: then the G step's forward pass of the same z moves them, once.
    Returns D's loss, D(x) and D(G(z))."""
    fake, g_state = generator.stateless_call(
        values(generator.trainable_variables), values(generator.non_trainable_variables), z, training=True
    )
    if not keep_fake:
        _assign(generator.non_trainable_variables, g_state)
    (_, (loss_D, (d_state, D_x, D_G_z1))), grads = value_and_grad(replica_share(partial(d_loss, discriminator)))(
        values(discriminator.trainable_variables),
        values(discriminator.non_trainable_variables),
        real,
        ops.stop_gradient(fake),
        real_label,
    )
    d_optimizer.apply(grads, discriminator.trainable_variables)
    _assign(discriminator.non_trainable_variables, d_state)
    return loss_D, D_x, D_G_z1


def g_step(generator: keras.Model, discriminator: keras.Model, g_optimizer, z):
    """One G update through the (already updated) D, in train mode. G's forward pass runs
    again here, from the state before the D step's fakes of the same z when reusing them:
    train-mode BN normalises with batch statistics, so the images are the same. Returns G's
    loss and D(G(z))."""
    (_, (loss_G, (g_state, d_state, D_G_z2))), grads = value_and_grad(
        replica_share(partial(g_loss, generator, discriminator))
    )(
        values(generator.trainable_variables),
        values(generator.non_trainable_variables),
        values(discriminator.trainable_variables),
        values(discriminator.non_trainable_variables),
        z,
    )
    g_optimizer.apply(grads, generator.trainable_variables)
    _assign(generator.non_trainable_variables, g_state)
    _assign(discriminator.non_trainable_variables, d_state)
    return loss_G, D_G_z2


def update_ema(ema_generator: keras.Model, generator: keras.Model, decay: float) -> None:
    """common/algorithm.py's average after a G update: each trainable weight decay·ema +
    (1 - decay)·G, two products and a sum as every backend computes it (decay and 1 - decay
    converted from Python floats, not cast through float32); BN's moving statistics copied
    from G. The two models are built from one spec, so their weights pair up in order."""
    new_values = []
    for averaged, current in zip(ema_generator.weights, generator.weights, strict=True):
        if current.trainable:
            d, rest = (ops.convert_to_tensor(w, averaged.dtype) for w in (decay, 1 - decay))
            new_values.append(ops.add(ops.multiply(averaged, d), ops.multiply(current, rest)))
        else:
            new_values.append(ops.convert_to_tensor(current))
    distributed.assign(ema_generator.weights, new_values)


def train_step(
    generator: keras.Model,
    discriminator: keras.Model,
    g_optimizer: keras.optimizers.Optimizer,
    d_optimizer: keras.optimizers.Optimizer,
    reals,  # (k, N, H, W, C)
    z_d,  # (k, N, latent)
    z_g,  # (N, latent), or None to reuse the last D step's fakes
    real_label: float,
    ema_generator: keras.Model | None = None,  # G's moving average, where the run keeps one
    ema_decay: float = 0.0,
) -> dict:
    k = reals.shape[0]
    for j in range(k):
        keep_fake = z_g is None and j == k - 1
        loss_D, D_x, D_G_z1 = d_step(generator, discriminator, d_optimizer, reals[j], z_d[j], real_label, keep_fake)
    loss_G, D_G_z2 = g_step(generator, discriminator, g_optimizer, z_d[k - 1] if z_g is None else z_g)
    if ema_generator is not None:
        update_ema(ema_generator, generator, ema_decay)
    return {"loss_D": loss_D, "loss_G": loss_G, "D_x": D_x, "D_G_z1": D_G_z1, "D_G_z2": D_G_z2}
