"""The machine's own peak, measured: what the benchmark's efficiencies are a fraction of.

On a CPU there is no one vendor figure to trust (clock, cores, AVX-512 units and oneDNN's
kernels all decide it), so the peak is measured once per run, in each framework (torch,
JAX, TensorFlow, each in its own worker): the best FLOP/s of the model's largest
convolution, forward, at the benchmark's batch size, and of a large square GEMM. The best
of these is the machine peak. On a GPU, efficiency is given against the vendor's dense
peak for the precision (`VENDOR_PEAKS`), with the measured figures beside it.

The same worker also times every convolution's three passes in the framework's kernels that
the run's modes use (benchmarks/layers.py), from which the runner takes the "limit": one
convolution's forward rate is not one, since other passes, of other layers, run faster.
"""

from __future__ import annotations

import time

from benchmarks.convolutions import jax_convolution, tensorflow_convolution, torch_convolution
from benchmarks.flops import largest_layer, layer_flops
from common.precision import TRAINING_PRECISIONS
from common.presets import make_config

# Dense (no sparsity) peak TFLOP/s from NVIDIA's data sheets, by a name `device_name` contains.
VENDOR_PEAKS = {
    "H200": {"float32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 SXM": {"float32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"float32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"float32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H100 80GB HBM3": {"float32": 67.0, "tf32": 494.7, "bf16": 989.4},  # the SXM part's CUDA name
    "A100": {"float32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L4": {"float32": 30.3, "tf32": 60.0, "bf16": 121.0},
}


def vendor_peak(device_name: str, precision: str) -> float | None:
    """FLOP/s from the data sheet for a GPU whose name contains a VENDOR_PEAKS key, else None."""
    for key, peaks in VENDOR_PEAKS.items():
        if key in device_name:
            return peaks[precision] * 1e12
    return None


def best_seconds(fn, repeats: int = 10) -> float:
    """The fastest of `repeats` timed calls, after two untimed ones; `fn` must synchronise."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _torch(layer, batch: int, n: int, precision: str, device: str):
    import torch

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    chosen = TRAINING_PRECISIONS[precision]  # the peak of the dtype the convolutions and matmuls compute in
    dtype = getattr(torch, chosen.compute)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = chosen.tf32
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    conv, x, w = torch_convolution(layer, batch, dtype, dev)
    with torch.no_grad():
        return best_seconds(lambda: (a @ b, sync())), best_seconds(lambda: (conv(x, w), sync()))


def _jax(layer, batch: int, n: int, precision: str, device: str):
    import jax
    import jax.numpy as jnp

    chosen = TRAINING_PRECISIONS[precision]
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if chosen.tf32 else "highest")
    dtype = getattr(jnp, chosen.compute)
    keys = jax.random.split(jax.random.key(0), 3)
    a, b = jax.random.normal(keys[0], (n, n), dtype), jax.random.normal(keys[1], (n, n), dtype)
    f, x, w = jax_convolution(layer, batch, dtype, keys[2])
    conv, matmul = jax.jit(f), jax.jit(jnp.matmul)
    return (
        best_seconds(lambda: matmul(a, b).block_until_ready()),
        best_seconds(lambda: conv(x, w).block_until_ready()),
    )


def _tensorflow(layer, batch: int, n: int, precision: str, device: str):
    import tensorflow as tf

    chosen = TRAINING_PRECISIONS[precision]
    tf.config.experimental.enable_tensor_float_32_execution(chosen.tf32)
    dtype = getattr(tf, chosen.compute)
    a, b = tf.cast(tf.random.normal((n, n)), dtype), tf.cast(tf.random.normal((n, n)), dtype)
    f, x, w = tensorflow_convolution(layer, batch, dtype)
    conv = tf.function(lambda: f(x, w))
    matmul = tf.function(lambda: tf.matmul(a, b))
    return best_seconds(lambda: matmul().numpy()), best_seconds(lambda: conv().numpy())


FRAMEWORKS = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow}


PASS_REPEATS = 5  # best of 5 for each pass of each convolution, as `python -m benchmarks.layers`


def measure(job: dict) -> dict:
    """The GEMM's and the largest convolution's best FLOP/s in one framework, and the best
    time of every convolution's passes in each of `job["kernels"]` (names of
    benchmarks.layers.KERNELS of this framework's)."""
    from benchmarks.layers import time_passes

    config = make_config(job["preset"], {"optim.batch_size": job["batch_size"]})
    layer = largest_layer(config)
    n = job.get("gemm_size", 4096)
    batch, precision, device = job["batch_size"], job["precision"], job["device"]
    gemm_s, conv_s = FRAMEWORKS[job["framework"]](layer, batch, n, precision, device)
    passes = {k: time_passes(k, job["preset"], batch, PASS_REPEATS, precision, device) for k in job.get("kernels", [])}
    return {
        "status": "done",
        "framework": job["framework"],
        "precision": job["precision"],
        "layer": layer.name,
        "gemm_size": n,
        "gemm_flops_per_s": 2 * n**3 / gemm_s,
        "conv_flops_per_s": layer_flops(layer) * job["batch_size"] / conv_s,
        "passes": passes,
    }
