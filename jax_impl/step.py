"""One training iteration in JAX/Flax NNX: common/algorithm.py's algorithm, function for
function as pytorch_impl/step.py writes it.

The whole iteration is one `nnx.jit` program; its k-loop unrolls at trace time (k is the
static leading dimension of `reals`), and `z_g is None` is part of the argument structure,
so "reuse" and "fresh" each compile once. Metrics are returned as jax scalars, so the step
itself never waits on the host. G's moving average, where the run keeps one, is part of the
step's state and is updated inside the same program; its decay is static, so that 1 - decay
is computed in Python (double precision) as on the other backends, not in the parameters'
dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jax_impl.models import Discriminator, Generator


def bce(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy on logits against one target for the whole batch."""
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()


def at_least_float32(logits: jax.Array) -> jax.Array:
    """bfloat16 logits (mixed precision) as float32, so losses are float32; float64 stays."""
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def d_loss(discriminator: Discriminator, real: jax.Array, fake: jax.Array, real_label: float):
    """BCE of D on a real batch (target real_label) plus on a fake batch (target 0), as two passes."""
    real_logits = at_least_float32(discriminator(real))
    fake_logits = at_least_float32(discriminator(fake))
    loss = bce(real_logits, real_label) + bce(fake_logits, 0.0)
    return loss, (nnx.sigmoid(real_logits).mean(), nnx.sigmoid(fake_logits).mean())


def g_loss(discriminator: Discriminator, fake: jax.Array):
    """The non-saturating generator loss: BCE of D(G(z)) against the real target 1."""
    logits = at_least_float32(discriminator(fake))
    return bce(logits, 1.0), nnx.sigmoid(logits).mean()


def generate(generator: Generator, z: jax.Array):
    """G(z) in train mode, and the pullback from a gradient w.r.t. the images to G's gradients.

    Splitting G's backward pass from its forward lets one forward serve both the D update
    and, later, the G update (g_fake_batch "reuse"), so G's BN running statistics move once
    for it, as in PyTorch where the G step backpropagates through the D step's graph.
    """
    fake, pullback = nnx.vjp(lambda g, z: g(z), generator, z, graph=False)
    return fake, lambda grad_fake: pullback(grad_fake)[0]


def d_step(
    generator: Generator,
    discriminator: Discriminator,
    d_optimizer: nnx.Optimizer,
    real: jax.Array,
    z: jax.Array,
    real_label: float,
):
    """One D update on a real batch and G(z). Returns G(z) with its pullback (the G step
    reuses both), and D's loss, D(x) and D(G(z))."""
    fake, pullback = generate(generator, z)
    (loss_D, (D_x, D_G_z1)), grads = nnx.value_and_grad(d_loss, has_aux=True)(
        discriminator, real, jax.lax.stop_gradient(fake), real_label
    )
    d_optimizer.update(discriminator, grads)
    return (fake, pullback), (loss_D, D_x, D_G_z1)


def g_step(
    generator: Generator,
    discriminator: Discriminator,
    g_optimizer: nnx.Optimizer,
    fake: jax.Array,
    pullback,
):
    """One G update through the (already updated) D, in train mode (its BN statistics and
    dropout stream advance): D's gradient w.r.t. the fakes, pulled back through G's forward
    pass. Returns G's loss and D(G(z))."""
    (loss_G, D_G_z2), grad_fake = nnx.value_and_grad(g_loss, argnums=1, has_aux=True)(discriminator, fake)
    g_optimizer.update(generator, pullback(grad_fake))
    return loss_G, D_G_z2


def update_ema(ema_generator: Generator, generator: Generator, decay: float) -> None:
    """common/algorithm.py's average after a G update: each parameter decay·ema + (1 - decay)·G,
    two products and a sum as every backend computes it; BN's running statistics copied from G."""
    averaged = jax.tree.map(
        lambda ema, current: decay * ema + (1 - decay) * current,
        nnx.state(ema_generator, nnx.Param),
        nnx.state(generator, nnx.Param),
    )
    nnx.update(ema_generator, averaged, nnx.state(generator, nnx.BatchStat))


@functools.partial(nnx.jit, static_argnames="ema_decay")
def train_step(
    generator: Generator,
    discriminator: Discriminator,
    g_optimizer: nnx.Optimizer,
    d_optimizer: nnx.Optimizer,
    reals: jax.Array,  # (k, N, H, W, C)
    z_d: jax.Array,  # (k, N, latent)
    z_g: jax.Array | None,  # (N, latent), or None to reuse the last D step's fakes
    real_label: float,
    ema_generator: Generator | None = None,  # G's moving average, where the run keeps one
    ema_decay: float = 0.0,
) -> dict[str, jax.Array]:
    k = reals.shape[0]
    for j in range(k):
        # Every D step keeps a pullback; only the last one's can be used (by "reuse"),
        # and XLA drops the others as dead code.
        (fake, pullback), (loss_D, D_x, D_G_z1) = d_step(
            generator, discriminator, d_optimizer, reals[j], z_d[j], real_label
        )
    if z_g is not None:
        fake, pullback = generate(generator, z_g)
    loss_G, D_G_z2 = g_step(generator, discriminator, g_optimizer, fake, pullback)
    if ema_generator is not None:
        update_ema(ema_generator, generator, ema_decay)
    return {"loss_D": loss_D, "loss_G": loss_G, "D_x": D_x, "D_G_z1": D_G_z1, "D_G_z2": D_G_z2}
