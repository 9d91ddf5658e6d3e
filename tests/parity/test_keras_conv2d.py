"""keras_impl/layers.py's Conv2D: on Keras's torch backend it computes through PyTorch on
channels-last views (keras_impl/on_torch.py), which in float64 takes the weight gradient that
Keras's own Conv2D cannot (PyTorch's ``slow_conv2d`` refuses it for one output channel,
docs/conventions.md), and everywhere it computes what keras.layers.Conv2D computes (on JAX
through jax_impl/convolutions.py, whose input gradient sums in another order).

Each Keras backend runs in a process of its own (Keras fixes its backend per process), which
computes the outputs and the gradients of sum(outputs · g) with respect to the kernel, the bias
and the input, through both layers holding the same weights; this process holds them to a
convolution written in NumPy, and the two layers to each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# name -> (in channels, out channels, kernel, stride, Keras padding, input height = width): D's
# last convolution (one output channel, a 4x4 kernel over a 4x4 map), D's other convolutions
# (k4 s2 "same", as make_layers builds PyTorch's padding 1), and "same" padded asymmetrically.
CASES = {
    "one-filter": (8, 1, 4, 1, "valid", 4),
    "k4s2-same": (3, 5, 4, 2, "same", 8),
    "k3s2-same-odd": (4, 2, 3, 2, "same", 6),
}
DTYPES = ("float64", "float32")
GRADIENTS = ("kernel", "bias", "inputs")
SLOW_CONV2D = "slow_conv2d: grad_weight must be contiguous"

SCRIPT = """
import json, sys
import keras
if keras.backend.backend() == "jax":
    import jax
    jax.config.update("jax_enable_x64", True)
import numpy as np
from keras import ops
from keras_impl.gradients import value_and_grad
from keras_impl.layers import Conv2D

given = dict(np.load(sys.argv[1]))
cases = json.loads(sys.argv[2])
found, errors = {}, {}
for name, (cin, cout, k, s, padding, size) in cases.items():
    for dtype in ("float64", "float32"):
        arrays = {part: given[f"{name}/{part}"].astype(dtype) for part in ("kernel", "bias", "inputs", "g")}
        for impl, cls in (("ours", Conv2D), ("keras", keras.layers.Conv2D)):
            layer = cls(cout, k, strides=s, padding=padding, dtype=dtype)
            layer.build(arrays["inputs"].shape)

            def loss(values, g):
                kernel, bias, inputs = values
                y = layer.stateless_call([kernel, bias], [], inputs)[0]
                return ops.sum(y * g), y

            values = [ops.convert_to_tensor(arrays[part]) for part in ("kernel", "bias", "inputs")]
            key = f"{name}/{dtype}/{impl}"
            try:
                (_, y), grads = value_and_grad(loss)(values, ops.convert_to_tensor(arrays["g"]))
            except Exception as err:
                errors[key] = f"{type(err).__name__}: {err}".splitlines()[0]
                continue
            for part, value in zip(("outputs", "kernel", "bias", "inputs"), (y, *grads)):
                found[f"{key}/{part}"] = ops.convert_to_numpy(value)
np.savez(sys.argv[3], **found)
print(json.dumps(errors))
"""


def _padded(x: np.ndarray, k: int, s: int, padding: str) -> tuple[np.ndarray, int]:
    """x (N, H, W, C) padded as Keras's "same" pads (the total split low side first), and the
    low padding."""
    if padding == "valid":
        return x, 0
    size = x.shape[1]
    total = max((-(-size // s) - 1) * s + k - size, 0)
    low = total // 2
    return np.pad(x, ((0, 0), (low, total - low), (low, total - low), (0, 0))), low


def _reference(x, kernel, bias, g, s, padding):
    """The convolution, and the gradients of sum(outputs · g), written out in NumPy float64."""
    k = kernel.shape[0]
    xp, low = _padded(x, k, s, padding)
    out = g.shape[1]
    patches = np.stack(
        [np.stack([xp[:, a : a + s * out : s, b : b + s * out : s, :] for b in range(k)], 3) for a in range(k)], 3
    )  # (N, out, out, k, k, C)
    outputs = np.einsum("nijabc,abco->nijo", patches, kernel) + bias
    d_kernel = np.einsum("nijabc,nijo->abco", patches, g)
    d_xp = np.zeros_like(xp)
    for a in range(k):
        for b in range(k):
            d_xp[:, a : a + s * out : s, b : b + s * out : s, :] += np.einsum(
                "abco,nijo->nijc", kernel[a : a + 1, b : b + 1], g
            )
    size = x.shape[1]
    return {
        "outputs": outputs,
        "kernel": d_kernel,
        "bias": g.sum((0, 1, 2)),
        "inputs": d_xp[:, low : low + size, low : low + size, :],
    }


def _given() -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Each case's kernel, bias, input and output gradient g, and its NumPy reference."""
    rng = np.random.default_rng(0)
    given, expected = {}, {}
    for name, (cin, cout, k, s, padding, size) in CASES.items():
        out = -(-size // s) if padding == "same" else (size - k) // s + 1
        arrays = {
            "kernel": rng.normal(size=(k, k, cin, cout)),
            "bias": rng.normal(size=(cout,)),
            "inputs": rng.normal(size=(2, size, size, cin)),
            "g": rng.normal(size=(2, out, out, cout)),
        }
        given.update({f"{name}/{part}": v for part, v in arrays.items()})
        expected[name] = _reference(arrays["inputs"], arrays["kernel"], arrays["bias"], arrays["g"], s, padding)
    return given, expected


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.float64(a) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module", params=["torch", "jax", "tensorflow"])
def computed(request, tmp_path_factory):
    """(backend, the arrays its process computed, the errors it met, the NumPy references)."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(backend)
    given, expected = _given()
    np.savez(tmp / "given.npz", **given)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp / "given.npz"), json.dumps(CASES), str(tmp / "found.npz")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    errors = json.loads(run.stdout.strip().splitlines()[-1])
    return backend, dict(np.load(tmp / "found.npz")), errors, expected


def test_conv2d_computes_the_convolution_and_its_gradients(computed):
    """Outputs and the gradients of kernel, bias and input equal the NumPy convolution's: to
    1e-12 in float64 (rounding only), to 1e-5 in float32, on every backend."""
    backend, found, errors, expected = computed
    assert not [key for key in errors if key.endswith("/ours")], errors
    for name in CASES:
        for dtype, tolerance in (("float64", 1e-12), ("float32", 1e-5)):
            for part in ("outputs", *GRADIENTS):
                error = _relative(found[f"{name}/{dtype}/ours/{part}"], expected[name][part])
                assert error < tolerance, (backend, name, dtype, part, error)


def test_conv2d_is_keras_own_where_keras_own_runs(computed):
    """Wherever keras.layers.Conv2D takes its gradients, this layer computes exactly what it
    does (Keras's own path) on TensorFlow; on torch (keras_impl/on_torch.py) and on JAX
    (jax_impl/convolutions.py) it agrees to rounding."""
    backend, found, errors, _ = computed
    for name in CASES:
        for dtype in DTYPES:
            key = f"{name}/{dtype}"
            if f"{key}/keras" in errors:
                continue
            for part in ("outputs", *GRADIENTS):
                ours, theirs = found[f"{key}/ours/{part}"], found[f"{key}/keras/{part}"]
                if backend in ("jax", "torch"):
                    tolerance = 1e-12 if dtype == "float64" else 1e-5
                    assert _relative(ours, theirs) < tolerance, (backend, name, dtype, part)
                else:
                    assert np.array_equal(ours, theirs), (backend, name, dtype, part)


def test_keras_own_conv2d_fails_only_where_this_layer_is_needed(computed):
    """Keras's own Conv2D cannot take the weight gradient of a one-output-channel convolution in
    float64 on torch, and takes every other. Should PyTorch lift the limit, this fails: then
    keras_impl/on_torch.py's contiguous copies in float64 are no longer needed."""
    backend, _, errors, _ = computed
    keras_errors = {key: error for key, error in errors.items() if key.endswith("/keras")}
    if backend == "torch":
        assert set(keras_errors) == {"one-filter/float64/keras"}, keras_errors
        assert SLOW_CONV2D in keras_errors["one-filter/float64/keras"]
    else:
        assert not keras_errors
