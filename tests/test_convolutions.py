"""jax_impl/convolutions.py: its conv and conv_transpose give lax's values and gradients, and
the Flax and Keras-on-JAX layers built on them compute what Flax's and Keras's own layers do.

Every case is (in channels, out channels, kernel, stride, lax padding, input height, width):
the convolutions of each preset's generator and discriminator, at batch 2 and at most
CHANNELS channels, and a few more shapes (stride 3, asymmetric padding, non-square input, a
kernel that is not a multiple of the stride, a kernel smaller than the stride).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec
from jax_impl import models
from jax_impl.convolutions import conv, conv_transpose

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 1e-2}  # relative, in the 2-norm
# The index arithmetic under test depends on kernel, stride, padding and input size, not on
# how many channels are summed: the presets' 64-512 channels are capped, which makes the
# float64 convolutions (XLA:CPU's slowest) ~100x cheaper and the file's time mostly compiling.
CHANNELS = 16


def _preset_cases(kind: str) -> dict[str, tuple]:
    """Each preset's convolutions of `kind`, one per (kernel, stride, padding, input size):
    svhn32's repeat dcgan64's with fewer channels, and pokemon64's are dcgan64's. A transposed
    convolution's lax padding is k - 1 - p (PyTorch's ConvTranspose2d(padding=p))."""
    cases, seen = {}, set()
    for preset in PRESETS:
        model = make_config(preset).model
        for layer in [*generator_spec(model).layers, *discriminator_spec(model).layers]:
            if layer.kind == kind:
                k, p, (_, h, w) = layer.kernel, layer.padding, layer.in_shape
                pad = k - 1 - p if kind == "conv_transpose" else p
                channels = min(layer.in_channels, CHANNELS), min(layer.out_channels, CHANNELS)
                case = (*channels, k, layer.stride, ((pad,) * 2,) * 2, h, w)
                if case[2:] not in seen:
                    seen.add(case[2:])
                    cases[f"{preset}-{layer.name}"] = case
    return cases


MORE_CASES = {
    "stride3-asymmetric": (5, 7, 3, 3, ((0, 2), (1, 0)), 5, 4),
    "k5s2-asymmetric": (4, 6, 5, 2, ((4, 3), (2, 4)), 3, 6),
    "k2s3": (3, 2, 2, 3, ((1, 2), (1, 2)), 4, 4),
}
CASES = {
    "conv_transpose": {**_preset_cases("conv_transpose"), **MORE_CASES},
    "conv": {**_preset_cases("conv"), **MORE_CASES, "k5s2-odd": (3, 4, 5, 2, ((2, 1), (0, 2)), 7, 9)},
}
LAX = {
    "conv_transpose": jax.lax.conv_transpose,
    "conv": lambda x, w, strides, padding: jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    ),
}
OURS = {"conv_transpose": conv_transpose, "conv": conv}


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _values_and_gradients(f, *args) -> list[jax.Array]:
    """f(*args), then every gradient of <f(*args), g> for a random g, flattened."""
    y, pullback = jax.vjp(f, *args)
    g = jax.random.normal(jax.random.key(1), y.shape, y.dtype)
    return [y, *jax.tree.leaves(pullback(g))]


def _compare(pairs: dict, inputs: dict, tolerance: float) -> None:
    """Runs both functions of each pair on its inputs in one compiled program (compiling
    dominates this file's time) and holds their values and gradients to `tolerance`."""
    results = jax.jit(
        lambda inputs: {name: [_values_and_gradients(f, *inputs[name]) for f in pair] for name, pair in pairs.items()}
    )(inputs)
    for name, (ours, reference) in results.items():
        assert len(ours) == len(reference)
        for a, b in zip(ours, reference):
            assert a.shape == b.shape and a.dtype == b.dtype, name
            assert _relative(a, b) < tolerance, (name, _relative(a, b))


def _inputs(case, dtype, seed=0):
    cin, cout, k, _, _, h, w = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, h, w, cin)), dtype)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)), dtype)
    return x, kernel


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_lax(dtype):
    """conv's and conv_transpose's outputs, input gradients and kernel gradients are lax's."""

    def pair(kind, strides, padding):
        return (
            lambda x, w: OURS[kind](x, w, strides, padding),
            lambda x, w: LAX[kind](x, w, strides, padding),
        )

    with jax.enable_x64(dtype == "float64"):
        pairs, inputs = {}, {}
        for kind, cases in CASES.items():
            for name, case in cases.items():
                pairs[f"{kind}/{name}"] = pair(kind, (case[3],) * 2, case[4])
                inputs[f"{kind}/{name}"] = _inputs(case, dtype)
        _compare(pairs, inputs, TOLERANCE[dtype])


FLAX = {"conv_transpose": (models.ConvTranspose, nnx.ConvTranspose), "conv": (models.Conv, nnx.Conv)}


def _flax_pair(kind, case, dtype, param_dtype):
    """This project's layer (with a bias), and the function Flax's own __call__ computes with
    its state; each as f(state, x)."""
    cin, cout, k, s, padding, _, _ = case
    ours, flax_own = FLAX[kind]
    module = ours(
        cin,
        cout,
        (k, k),
        (s, s),
        padding=padding,
        use_bias=True,
        bias_init=nnx.initializers.normal(1.0),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=nnx.Rngs(0),
    )
    graphdef, state = nnx.split(module)

    def run(call):
        return lambda state, x: call(nnx.merge(graphdef, state), x)

    return state, (run(ours.__call__), run(flax_own.__call__))


@pytest.mark.parametrize(
    "dtype, param_dtype", [("float64", "float64"), ("float32", "float32"), ("bfloat16", "float32")]
)
def test_flax_layers_match_nnx(dtype, param_dtype):
    """Outputs and gradients (bias, kernel, input) as Flax's own layers give them, also under
    mixed precision (bfloat16 compute, float32 parameters)."""
    names = [("conv_transpose", "mnist28-convt2"), ("conv_transpose", "stride3-asymmetric"), ("conv", "dcgan64-conv2")]
    with jax.enable_x64(dtype == "float64"):
        pairs, inputs = {}, {}
        for kind, name in names:
            state, pairs[name] = _flax_pair(kind, CASES[kind][name], jnp.dtype(dtype), jnp.dtype(param_dtype))
            inputs[name] = (state, _inputs(CASES[kind][name], param_dtype)[0])
        _compare(pairs, inputs, TOLERANCE[dtype])
        y = pairs[names[0][1]][0](*inputs[names[0][1]])
        assert y.dtype == jnp.dtype(dtype) and len(jax.tree.leaves(inputs[names[0][1]])) == 3  # bias, kernel, x


@pytest.mark.parametrize("kind", ["conv", "conv_transpose"])
def test_make_layer_keeps_flax_parameters(kind):
    """The same parameter names, shapes, dtypes and initial values as Flax's own layer."""
    model = make_config("mnist28").model
    layer = next(
        layer for layer in [*generator_spec(model).layers, *discriminator_spec(model).layers] if layer.kind == kind
    )
    spec = generator_spec(model)
    module = models.make_layer(layer, spec.init, nnx.Rngs(3))
    ours, flax_own = FLAX[kind]
    assert type(module) is ours
    k, p = layer.kernel, layer.padding
    pad = k - 1 - p if kind == "conv_transpose" else p
    plain = flax_own(
        layer.in_channels,
        layer.out_channels,
        (k, k),
        (layer.stride,) * 2,
        padding=((pad,) * 2,) * 2,
        use_bias=layer.bias,
        kernel_init=nnx.initializers.glorot_uniform(),
        rngs=nnx.Rngs(3),
    )
    ours, theirs = nnx.state(module, nnx.Param), nnx.state(plain, nnx.Param)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


KERAS_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import keras
import numpy as np
from keras_impl.models import Conv2D, Conv2DTranspose

def values_and_gradients(layer, weights, x):
    y, pullback = jax.vjp(lambda weights, x: layer.stateless_call(weights, [], x)[0], weights, x)
    return [y, *jax.tree.leaves(pullback(jax.random.normal(jax.random.key(1), y.shape, y.dtype)))]

errors = {}
for dtype in ("float64", "float32", "mixed_bfloat16"):
    layers, inputs = {}, {}
    for name, (kind, cin, cout, k, s, padding, h, w) in json.loads(sys.argv[1]).items():
        config = dict(filters=cout, kernel_size=k, strides=s, padding=padding, dtype=dtype)
        if kind == "conv":
            layers[name] = Conv2D(**config), keras.layers.Conv2D(**config)
        else:
            layers[name] = Conv2DTranspose(**config), keras.layers.Conv2DTranspose(**config)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, h, w, cin)).astype(layers[name][0].variable_dtype)
        for layer in layers[name]:
            layer.build(x.shape)
        inputs[name] = [rng.normal(size=v.shape).astype(v.dtype) for v in layers[name][0].trainable_variables], x
    results = jax.jit(lambda inputs: {name: [values_and_gradients(layer, *inputs[name]) for layer in pair]
                                      for name, pair in layers.items()})(inputs)
    for name, (ours, keras_own) in results.items():
        errors[f"{name}/{dtype}"] = [
            float(np.linalg.norm(np.float64(a) - np.float64(b)) / np.linalg.norm(np.float64(b)))
            for a, b in zip(ours, keras_own)
        ]
print(json.dumps(errors))
"""

# (in, out, kernel, stride, Keras padding, input height, width): the Keras padding of the
# preset layers (make_layers: "same" where k - s = 2p, else "valid"), and both paddings with
# a kernel smaller than the stride ("same" then pads an odd total, clipped to k - 1 low).
KERAS_CASES = {
    "dcgan64-convt1": ("conv_transpose", 100, 512, 4, 1, "valid", 1, 1),
    "dcgan64-convt2": ("conv_transpose", 512, 256, 4, 2, "same", 4, 4),
    "k2s3-valid": ("conv_transpose", 3, 2, 2, 3, "valid", 4, 5),
    "k2s3-same": ("conv_transpose", 3, 2, 2, 3, "same", 4, 5),
    "dcgan64-conv2": ("conv", 16, 32, 4, 2, "same", 32, 32),
    "dcgan64-conv5": ("conv", 32, 1, 4, 1, "valid", 4, 4),
    "k4s2-same-odd": ("conv", 3, 5, 4, 2, "same", 7, 9),  # lax pads the odd row on the high side
    "k3s3-valid": ("conv", 3, 2, 3, 3, "valid", 8, 7),
}


def test_keras_layers_match_keras_own_on_jax():
    """Outputs and gradients (kernel, bias, input) as Keras's own Conv2D and Conv2DTranspose
    give them on JAX, in float64, float32 and mixed_bfloat16 (a process of its own: Keras fixes
    its backend)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", KERAS_SCRIPT, json.dumps(KERAS_CASES)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    errors = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(errors) == 3 * len(KERAS_CASES)
    for key, values in errors.items():
        dtype = key.split("/")[1].removeprefix("mixed_")
        assert len(values) == 4 and max(values) < TOLERANCE[dtype], (key, values)
