"""Keras layers that the models need and Keras 3.15.1 does not provide as such.

The parity suite holds every build to PyTorch's numbers, in float64 within 1e-9, and four
kinds of difference in Keras's own layers stand in the way; each class below removes one:

* conventions: Keras's BatchNormalization keeps the biased batch variance as its moving
  variance, PyTorch the unbiased one (`BatchNormalization`);
* float64: on some backends Keras 3.15 computes float64 in float32 inside an op
  (`ops.mean`, `ops.matmul`, `ops.tanh` through its result_type rules on JAX and torch,
  TensorFlow's leaky_relu with a float32 slope), an error of 1e-7 or more where float64
  promises 1e-16 (`mean`, `Dense`, `Tanh`, `LeakyReLU`); below float64 each takes Keras's
  own path, so float32 and bfloat16 run Keras's kernels unchanged;
* speed: on JAX, Keras's Conv2D and Conv2DTranspose compute their passes as lax and JAX's
  autodiff do, some of which XLA's CPU backend runs slowly (both use jax_impl/convolutions.py);
  on torch, Keras copies every convolution's input between layouts and builds BN from a dozen
  unfused ops (`Conv2D`, `Conv2DTranspose` and `BatchNormalization` use PyTorch's own kernels
  on channels-last views, keras_impl/on_torch.py; figures in docs/benchmarks.md);
* a framework limit: on torch, Keras's Conv2D hands PyTorch's CPU float64 convolution a memory
  layout whose weight gradient it refuses for a convolution with one output channel
  (keras_impl/on_torch.py gives it contiguous tensors in float64).

Each is a subclass of the Keras layer it replaces, with the same weights and arguments, so a
model saved with them holds Keras's own variables. Revisit them with each Keras release
(and `Conv2D` with each PyTorch release: tests/parity/test_keras_conv2d.py says when it is no
longer needed).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_impl import distributed


def mean(x, axis=None):
    """The mean as sum / count. Keras 3.15's ops.mean on JAX averages float64 in float32
    (its result_type("float64", "float32") is float32), an error of 1e-7 where float64
    promises 1e-16; ops.sum keeps the input's dtype on every backend."""
    total = ops.sum(x, axis=axis)
    return total / _count(x, total)


def _count(x, reduced):
    """How many elements of x were reduced into each of `reduced` (dynamic shapes allowed)."""
    return ops.cast(ops.size(x) // ops.size(reduced), x.dtype)


class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization with PyTorch's statistics, in the input's own dtype.

    In training mode the batch variance is the two-pass mean((x - mean)^2), the same on
    every Keras backend, and the moving variance is updated with the UNBIASED batch
    variance, n / (n - 1) times it, as PyTorch's running_var is (Keras keeps the biased
    one); normalisation uses the biased variance in both. It computes in the dtype of its
    variables: float32 under mixed_bfloat16, whose bfloat16 statistics would lose too much
    (as Keras's own layer does), and float64 in float64, where Keras's own
    result_type(dtype, "float32") is float32 on JAX and torch (Keras 3.15).

    Data parallelism (model.bn_statistics):

    * `groups` > 1 normalises each 1/groups of the batch by its own statistics ("ghost" batch
      norm, as jax_impl/models.py's BatchNorm.groups) and moves the moving statistics by the
      mean of the groups'. On Keras-JAX's DataParallel, whose step sees the global batch,
      groups = devices gives each device its own shard's statistics.
    * `synchronized` (Keras's own flag, TensorFlow only) takes the statistics of the global
      batch of a tf.distribute strategy's replicas: the sums are all-reduced over replicas.
      Keras's own synchronized moments compute E[x^2] - E[x]^2; this keeps the two passes.
    * The moving statistics are "mean"-aggregated variables: under a tf.distribute strategy an
      assignment in replica context sets every replica's copy to the mean of the replicas'
      values (tf.VariableAggregation.MEAN), as per-device statistics need; synchronized ones
      are equal on every replica already. Outside a strategy aggregation changes nothing.
    """

    groups = 1

    def add_weight(self, *args, trainable=True, **kwargs):
        if not trainable:  # the moving statistics
            kwargs["aggregation"] = "mean"
        return super().add_weight(*args, trainable=trainable, **kwargs)

    def call(self, inputs, training=None, mask=None):
        inputs = ops.cast(inputs, self.moving_mean.dtype)
        if keras.backend.backend() == "torch" and self.groups == 1 and not self.synchronized:
            return self._call_torch(inputs, training and self.trainable)
        if not (training and self.trainable):
            return self._normalize(inputs, self.moving_mean, self.moving_variance)
        parts = ops.split(inputs, self.groups) if self.groups > 1 else [inputs]
        statistics = [self._statistics(part) for part in parts]
        batch_mean = _average([m for m, _, _ in statistics])
        unbiased = _average([variance * (n / (n - 1.0)) for _, variance, n in statistics])
        self.moving_mean.assign(self.moving_mean * self.momentum + batch_mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        outputs = [self._normalize(part, m, variance) for part, (m, variance, _) in zip(parts, statistics)]
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs)

    def _call_torch(self, inputs, training: bool):
        """The same, by PyTorch's fused batch norm (keras_impl/on_torch.py)."""
        from keras_impl import on_torch  # keras_impl imports torch only on torch

        outputs, moving_mean, moving_variance = on_torch.batch_norm(
            inputs,
            *map(ops.convert_to_tensor, (self.gamma, self.beta)),
            self.epsilon,
            *map(ops.convert_to_tensor, (self.moving_mean, self.moving_variance)),
            momentum=self.momentum if training else None,
        )
        if training:
            self.moving_mean.assign(moving_mean)
            self.moving_variance.assign(moving_variance)
        return ops.cast(outputs, self.compute_dtype)

    def _statistics(self, x):
        """The mean, biased variance and count of each channel of x; with `synchronized`, of the
        global batch of all replicas."""
        axes = self._reduction_axes
        if not self.synchronized:
            batch_mean = mean(x, axis=axes)
            return batch_mean, mean(ops.square(x - batch_mean), axis=axes), _count(x, batch_mean)
        total = ops.sum(x, axis=axes)
        n = distributed.all_sum(_count(x, total))
        batch_mean = distributed.all_sum(total) / n
        return batch_mean, distributed.all_sum(ops.sum(ops.square(x - batch_mean), axis=axes)) / n, n

    def _normalize(self, x, batch_mean, variance):
        outputs = ops.batch_normalization(
            x, batch_mean, variance, axis=-1, offset=self.beta, scale=self.gamma, epsilon=self.epsilon
        )
        return ops.cast(outputs, self.compute_dtype)


def _average(values: list):
    """The mean of a list of tensors (the one tensor itself, exactly, for a list of one)."""
    return values[0] if len(values) == 1 else sum(values[1:], values[0]) / len(values)


class Dropout(layers.Dropout):
    """keras.layers.Dropout, with a different mask on each replica of a tf.distribute strategy.

    Keras's Dropout draws its mask from its seed generator, whose state is mirrored, so every
    replica would draw the same mask for its shard. Under a strategy each replica draws the
    mask of the global batch (the same on every replica) and keeps its own rows of it: the
    mask a single device draws for the global batch, so a data-parallel run is the
    single-device run here too. One replica (every single-device run, and Keras-JAX, whose
    step sees the global batch) takes Keras's own path."""

    def call(self, inputs, training=False):
        replicas, replica = distributed.replica()
        if not (training and self.rate > 0) or replicas == 1:
            return super().call(inputs, training=training)
        size = ops.shape(inputs)[0]
        mask = super().call(ops.ones((replicas * size, *inputs.shape[1:]), inputs.dtype), training=True)
        return inputs * ops.slice(mask, (replica * size,) + (0,) * (len(inputs.shape) - 1), ops.shape(inputs))


class LeakyReLU(layers.LeakyReLU):
    """keras.layers.LeakyReLU, with float64 kept exact. Keras's own calls tf.nn.leaky_relu on
    TensorFlow, whose slope is a float32 attribute: in float64 it multiplies by 0.2000000030,
    not 0.2; there this computes where(x > 0, x, slope·x) from ops instead. Below float64 Keras's own
    is exact and is one fused kernel (torch's and TensorFlow's leaky_relu) where the ops are
    three, and three more in the backward pass (docs/benchmarks.md)."""

    def call(self, inputs):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs)
        return ops.where(inputs > 0, inputs, inputs * ops.convert_to_tensor(self.negative_slope, inputs.dtype))


class Dense(layers.Dense):
    """keras.layers.Dense, with float64 kept in float64: Keras 3.15's ops.matmul on torch
    (and its other binary ops that promote through result_type) computes float64 in float32
    on the JAX and torch backends; ops.einsum keeps the dtype. float32 takes Keras's own path."""

    def call(self, inputs, training=None):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs, training=training)
        outputs = ops.einsum("...i,io->...o", inputs, self.kernel)
        return self.activation(outputs + self.bias if self.use_bias else outputs)


class Tanh(layers.Layer):
    """tanh in the input's dtype. Keras 3.15's ops.tanh on JAX computes float64 in float32
    (result_type(float64, float) is float32 there); in float64 this uses the exact identity
    tanh(x) = 2·sigmoid(2x) - 1, whose sigmoid keeps the dtype."""

    def call(self, inputs):
        if keras.backend.standardize_dtype(inputs.dtype) == "float64":
            return 2.0 * ops.sigmoid(2.0 * inputs) - 1.0
        return ops.tanh(inputs)


class Conv2D(layers.Conv2D):
    """keras.layers.Conv2D, on the JAX backend computed by jax_impl/convolutions.py and on the
    torch backend by PyTorch on channels-last views (keras_impl/on_torch.py).

    On JAX: the same values as Keras's own convolution, with an input gradient that XLA's CPU
    backend runs far faster. On torch: the same values without Keras's two layout copies of
    the input (docs/benchmarks.md). Covers what make_layers builds: channels_last, padding
    "same"/"valid", no dilation or groups. TensorFlow takes Keras's own path unchanged, and
    Keras's own ``call`` adds the bias and the activation in every case."""

    def convolution_op(self, inputs, kernel):
        backend = keras.backend.backend()
        if backend not in ("jax", "torch"):
            return super().convolution_op(inputs, kernel)
        kernel = ops.convert_to_tensor(kernel)
        padding = tuple(map(self._lax_padding, inputs.shape[1:3], self.kernel_size, self.strides))
        if backend == "torch":
            from keras_impl import on_torch  # keras_impl imports torch only on torch

            return on_torch.conv2d(inputs, kernel, self.strides, padding)
        from jax_impl.convolutions import conv  # keras_impl imports jax only on JAX

        return conv(inputs, kernel, self.strides, padding)

    def _lax_padding(self, size: int, k: int, s: int) -> tuple[int, int]:
        """The padding lax gives Keras's "same" (the odd row on the high side) or "valid"."""
        if self.padding == "valid":
            return 0, 0
        total = max((-(-size // s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2


class Conv2DTranspose(layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose; on the JAX backend computed by jax_impl/convolutions.py,
    the same values as Keras's own lax.conv_transpose with a forward pass and gradients that
    XLA's CPU backend runs far faster; on the torch backend by PyTorch on channels-last views
    (keras_impl/on_torch.py), without Keras's layout copy and its crop of the full output
    (docs/benchmarks.md). Covers what make_layers builds: channels_last, padding "same"/"valid",
    no dilation or output_padding; on torch, a kernel no smaller than the stride and, for
    "same", k - s even (the crop PyTorch's padding can take), else Keras's own path."""

    def call(self, inputs):
        backend = keras.backend.backend()
        crop = self._torch_crop()
        if backend == "jax":
            from jax_impl.convolutions import conv_transpose  # keras_impl imports jax only on JAX

            # Keras's kernel is (kh, kw, out, in) and its lax call flips and swaps it (transpose_kernel=True).
            kernel = ops.swapaxes(ops.flip(ops.convert_to_tensor(self.kernel), (0, 1)), 2, 3)
            padding = tuple(map(self._lax_padding, self.kernel_size, self.strides))
            outputs = conv_transpose(inputs, kernel, self.strides, padding)
        elif backend == "torch" and crop is not None:
            from keras_impl import on_torch  # keras_impl imports torch only on torch

            outputs = on_torch.conv_transpose2d(inputs, ops.convert_to_tensor(self.kernel), self.strides, crop)
        else:
            return super().call(inputs)
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, self.filters)))
        return self.activation(outputs)

    def _torch_crop(self) -> tuple[int, int] | None:
        """What PyTorch's conv_transpose2d crops from each side of its full output for Keras's
        padding, or None where no symmetric crop gives Keras's output."""
        crop = []
        for k, s in zip(self.kernel_size, self.strides):
            if k < s or (self.padding == "same" and (k - s) % 2):
                return None
            crop.append(0 if self.padding == "valid" else (k - s) // 2)
        return tuple(crop)

    def _lax_padding(self, k: int, s: int) -> tuple[int, int]:
        """Keras's padding of the stride-dilated input (keras/src/backend/common/backend_utils.py)."""
        if self.padding == "valid":
            return k - 1, max(k, s) - 1
        total = k + s - 2  # "same": out = in·s
        low = min((total + 1) // 2, k - 1)
        return low, total - low
