"""keras_impl's Conv2D, Conv2DTranspose and BatchNormalization on Keras's torch backend, which
compute through PyTorch on channels-last views (keras_impl/on_torch.py): the values and
gradients of Keras's own layers, and BN's moving statistics as PyTorch keeps them.

One process on the torch backend (Keras fixes its backend per process) computes each layer
pair's outputs and the gradients of sum(outputs · g) with respect to the weights and the
input, in float64, float32 and mixed_bfloat16; this process compares them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 1e-2}  # relative, in the 2-norm

SCRIPT = """
import json, sys
import keras
import numpy as np
import torch
from keras import ops
from keras_impl.gradients import value_and_grad
from keras_impl.layers import BatchNormalization, Conv2D, Conv2DTranspose

OURS = {"conv": Conv2D, "conv_transpose": Conv2DTranspose, "batch_norm": BatchNormalization}
KERAS = {"conv": keras.layers.Conv2D, "conv_transpose": keras.layers.Conv2DTranspose,
         "batch_norm": keras.layers.BatchNormalization}
errors, batch_norm, failed = {}, {}, {}
for dtype in ("float64", "float32", "mixed_bfloat16"):
    for name, (kind, config, shape) in json.loads(sys.argv[1]).items():
        results = []
        for cls in (OURS[kind], KERAS[kind]):
            layer = cls(**config, dtype=dtype)
            rng = np.random.default_rng(0)
            x = rng.normal(size=shape).astype(layer.variable_dtype)
            layer.build(x.shape)
            trainable = [rng.normal(1.0, 0.5, size=v.shape).astype(v.dtype) for v in layer.trainable_variables]
            state = [ops.convert_to_tensor(v) for v in layer.non_trainable_variables]

            def loss(values, state):
                kwargs = {"training": True} if kind == "batch_norm" else {}
                y, new_state = layer.stateless_call(values[:-1], state, values[-1], **kwargs)
                g = torch.cos(torch.arange(y.numel(), dtype=torch.float64)).reshape(y.shape).to(y.dtype)
                return ops.sum(ops.cast(y * g, "float64")), (y, new_state)

            values = [*map(ops.convert_to_tensor, trainable), ops.convert_to_tensor(x)]
            try:
                (_, (y, new_state)), grads = value_and_grad(loss)(values, state)
            except RuntimeError as err:  # Keras's own Conv2D in float64 (docs/conventions.md)
                failed[f"{name}/{dtype}/{cls.__module__}"] = str(err).splitlines()[0]
                continue
            results.append([y, *grads])
            if cls is OURS[kind] and kind == "batch_norm":
                found = [x, *trainable, *map(ops.convert_to_numpy, (y, *grads, *new_state))]
                batch_norm[f"{name}/{dtype}"] = [np.asarray(a, "float64").tolist() for a in found]
        if len(results) < 2:
            continue
        errors[f"{name}/{dtype}"] = [
            float(np.linalg.norm(np.float64(ops.convert_to_numpy(a)) - np.float64(ops.convert_to_numpy(b)))
                  / np.linalg.norm(np.float64(ops.convert_to_numpy(b))))
            for a, b in zip(*results)
        ]
print(json.dumps({"errors": errors, "batch_norm": batch_norm, "failed": failed}))
"""

# name -> (kind, layer arguments, input shape NHWC): the padding make_layers gives the presets'
# layers ("same" where k - s = 2p, else "valid"), asymmetric "same", a transposed convolution
# whose kernel is smaller than its stride (Keras's own path on torch), and BN after a
# convolution and after a dense layer.
CASES = {
    "convt-k4s1-valid": ("conv_transpose", dict(filters=8, kernel_size=4, strides=1, padding="valid"), (2, 1, 1, 6)),
    "convt-k4s2-same": ("conv_transpose", dict(filters=4, kernel_size=4, strides=2, padding="same"), (2, 4, 5, 6)),
    "convt-k2s3-same": ("conv_transpose", dict(filters=2, kernel_size=2, strides=3, padding="same"), (2, 4, 5, 3)),
    "conv-k4s2-same": ("conv", dict(filters=5, kernel_size=4, strides=2, padding="same"), (2, 8, 8, 3)),
    "conv-k4s2-same-odd": ("conv", dict(filters=5, kernel_size=4, strides=2, padding="same"), (2, 7, 9, 3)),
    "conv-k4s1-valid-one-filter": ("conv", dict(filters=1, kernel_size=4, strides=1, padding="valid"), (2, 4, 4, 8)),
    "bn-maps": ("batch_norm", dict(momentum=0.9, epsilon=1e-5), (4, 3, 5, 6)),
    "bn-vectors": ("batch_norm", dict(momentum=0.9, epsilon=1e-5), (8, 7)),
}


@pytest.fixture(scope="module")
def computed():
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(CASES)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_layers_compute_what_keras_own_compute(computed):
    """Outputs and every gradient as Keras's own layers give them on torch, to rounding (PyTorch
    sums in another order), wherever Keras's own runs: its Conv2D cannot take a one-filter
    float64 weight gradient (docs/conventions.md), and its BN computes float64 in float32
    (keras_impl/layers.py), so float64 BN is held to NumPy below."""
    errors, failed = computed["errors"], computed["failed"]
    assert list(failed) == ["conv-k4s1-valid-one-filter/float64/keras.src.layers.convolutional.conv2d"], failed
    assert "grad_weight must be contiguous" in failed[list(failed)[0]]
    assert len(errors) == 3 * len(CASES) - 1
    for key, values in errors.items():
        name, dtype = key.split("/")
        if CASES[name][0] == "batch_norm" and dtype == "float64":
            continue
        assert len(values) == 4 and max(values) < TOLERANCE[dtype.removeprefix("mixed_")], (key, values)


def _batch_norm(x, gamma, beta, g, epsilon=1e-5):
    """Train-mode BN over all axes but the last, and the gradients of sum(outputs · g)."""
    axes = tuple(range(x.ndim - 1))
    xhat = (x - x.mean(axes)) / np.sqrt(x.var(axes) + epsilon)
    d_xhat = g * gamma
    d_x = (d_xhat - d_xhat.mean(axes) - xhat * (d_xhat * xhat).mean(axes)) / np.sqrt(x.var(axes) + epsilon)
    return gamma * xhat + beta, (g * xhat).sum(axes), g.sum(axes), d_x


def test_batch_norm_computes_and_moves_its_statistics_as_pytorch_does(computed):
    """Outputs and gradients of train-mode BN written out in NumPy; the moving statistics after
    one call from zeros and ones: momentum · old + (1 - momentum) · the batch's mean and
    UNBIASED variance, in the variable dtype (float32 under mixed_bfloat16)."""
    assert len(computed["batch_norm"]) == 3 * sum(kind == "batch_norm" for kind, _, _ in CASES.values())
    for key, found in computed["batch_norm"].items():
        name, dtype = key.split("/")
        x, gamma, beta, y, d_gamma, d_beta, d_x, moving_mean, moving_variance = map(np.array, found)
        g = np.cos(np.arange(y.size)).reshape(y.shape)
        axes, momentum = tuple(range(x.ndim - 1)), CASES[name][1]["momentum"]
        expected = {
            **dict(zip(("outputs", "gamma", "beta", "inputs"), _batch_norm(x, gamma, beta, g))),
            "moving_mean": (1 - momentum) * x.mean(axes),
            "moving_variance": momentum + (1 - momentum) * x.var(axes, ddof=1),
        }
        found = dict(zip(expected, (y, d_gamma, d_beta, d_x, moving_mean, moving_variance)))
        for part, value in found.items():
            # mixed_bfloat16: bfloat16 outputs, and gradients from their product with g; float32 statistics
            mixed = dtype == "mixed_bfloat16"
            tolerance = TOLERANCE[
                "bfloat16" if mixed and not part.startswith("moving") else dtype.replace("mixed_bfloat16", "float32")
            ]
            error = np.linalg.norm(value - expected[part]) / np.linalg.norm(expected[part])
            assert error < tolerance, (key, part, error)
