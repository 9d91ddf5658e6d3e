"""Where a step's time goes: each convolution of the model, timed alone, in each framework's
kernels; and the limit those timings give a training iteration.

    python -m benchmarks.layers --preset dcgan64 --batch-size 64

A training iteration is mostly its convolutions' three passes: the forward, the gradient
with respect to the input (what backpropagation passes on) and the one with respect to the
weights. When one backend's step is slower than another's, timing each of those alone, in
the layouts and calls the builds use (benchmarks/convolutions.py; PyTorch's passes through
`aten.convolution_backward`, JAX's through jax.vjp under jit, both lax's own passes and
jax_impl/convolutions.py's, TensorFlow's through tf.GradientTape under
tf.function, with and without XLA), shows which pass of which layer is responsible. Each
set of kernels (`KERNELS`) runs in its own process, best of `--repeats`.

The limit: `pass_counts` says how often an iteration runs each pass of each layer (the
counting rule of benchmarks/flops.py); every convolution pass at the best time any kernel
set took for it, that often, is the least time an iteration's convolutions can take on
these kernels (`limit`). It is a bound for a mode whose convolutions run through kernels
that were timed: each of its passes takes at least the best measured time of that pass,
and the rest of its step (normalisation, activations, Adam) adds to it. The benchmark
(benchmarks/runner.py) measures it in every run, at the run's precision, on the kernels of
the modes it times (`benchmarks.modes.Mode.kernels`), and its report sets each mode's time
per pass against the best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.convolutions import jax_convolution, tensorflow_convolution, torch_convolution
from benchmarks.flops import layer_flops
from benchmarks.peak import best_seconds
from common.config import Config
from common.precision import TRAINING_PRECISIONS
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec

PASSES = ("forward", "input grad", "weight grad")

# The convolution kernels that can be timed, by the name a mode's `kernels` gives, with the
# framework whose process times them and the label of the table's column.
KERNELS = {
    "torch": ("torch", "PyTorch (channels-last)"),
    "torch-nchw": ("torch", "PyTorch (NCHW)"),
    "jax": ("jax", "JAX (as jax_impl builds it)"),
    "jax-lax": ("jax", "JAX, lax's passes (its autodiff's gradients)"),
    "tensorflow": ("tensorflow", "TensorFlow"),
    "tensorflow-xla": ("tensorflow", "TensorFlow, XLA"),
}


def conv_layers(preset: str, batch_size: int):
    config = make_config(preset, {"optim.batch_size": batch_size})
    for spec in (generator_spec(config.model), discriminator_spec(config.model)):
        for layer in spec.layers:
            if layer.kind in ("conv", "conv_transpose"):
                yield layer


def pass_counts(config: Config) -> dict[tuple[str, str], int]:
    """How often one iteration (common/algorithm.py) runs each pass of each weighted layer, by
    benchmarks/flops.py's rule: per D step, G forward, D forward on the real and the fake batch
    and D's backward for both (its weights, and its input past its first layer); then the G
    step, G forward again only for fresh fakes, D forward and D's backward to its input only
    (into the images included: G needs it), and G's backward (not into the latent vectors)."""
    g, d = (
        [layer.name for layer in spec.layers if layer_flops(layer)]
        for spec in (generator_spec(config.model), discriminator_spec(config.model))
    )
    k, fresh = config.optim.d_steps, config.optim.g_fake_batch == "fresh"
    counts = {}
    for i, name in enumerate(g):
        counts |= {(name, "forward"): k + fresh, (name, "input grad"): int(i > 0), (name, "weight grad"): 1}
    for i, name in enumerate(d):
        counts |= {
            (name, "forward"): 2 * k + 1,
            (name, "input grad"): 2 * k * (i > 0) + 1,
            (name, "weight grad"): 2 * k,
        }
    return counts


def per_pass(times: dict[tuple[str, str], float], counts: dict[tuple[str, str], int]) -> dict[str, float]:
    """Seconds per iteration in each pass: `times` (seconds by (layer, pass)) weighted by
    `counts`, summed over the layers."""
    return {p: sum(counts[key] * t for key, t in times.items() if key[1] == p) for p in PASSES}


def limit(timings: dict[str, dict[tuple[str, str], float]], counts: dict[tuple[str, str], int]) -> dict:
    """The least time an iteration's convolutions take on the kernels timed: from `timings`
    (seconds by (layer, pass), by kernel set), the best time of each pass of each layer, which
    kernel set gave it, and `limit_s`, their sum weighted by how often an iteration runs each."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for kernels, times in timings.items():
        for key, t in times.items():
            if key not in best or t < best[key][0]:
                best[key] = (t, kernels)
    by_pass = per_pass({key: t for key, (t, _) in best.items()}, counts)
    return {"limit_s": sum(by_pass.values()), "by_pass": by_pass, "best": best}


def _torch(layer, batch: int, repeats: int, precision: str, device: str, channels_last: bool) -> dict[str, float]:
    import torch

    chosen = TRAINING_PRECISIONS[precision]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = chosen.tf32
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv, x, w = torch_convolution(layer, batch, getattr(torch, chosen.compute), dev)
    x, w = x.contiguous(memory_format=layout), w.contiguous(memory_format=layout)
    s, p = (layer.stride,) * 2, (layer.padding,) * 2
    transposed = layer.kind == "conv_transpose"
    with torch.no_grad():
        g = torch.randn_like(conv(x, w)).contiguous(memory_format=layout)

        def backward(mask):
            return lambda: (
                torch.ops.aten.convolution_backward(g, x, w, None, s, p, (1, 1), transposed, (0, 0), 1, mask),
                sync(),
            )

        return {
            "forward": best_seconds(lambda: (conv(x, w), sync()), repeats),
            "input grad": best_seconds(backward([True, False, False]), repeats),
            "weight grad": best_seconds(backward([False, True, False]), repeats),
        }


def _jax(layer, batch: int, repeats: int, precision: str, as_built: bool) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    chosen = TRAINING_PRECISIONS[precision]
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if chosen.tf32 else "highest")
    dtype = getattr(jnp, chosen.compute)
    keys = jax.random.split(jax.random.key(0), 2)
    f, x, w = jax_convolution(layer, batch, dtype, keys[0], as_built=as_built)
    g = jax.random.normal(keys[1], jax.eval_shape(f, x, w).shape, dtype)
    forward = jax.jit(f)
    input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: f(x, w), x)[1](g)[0])
    weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: f(x, w), w)[1](g)[0])
    return {
        "forward": best_seconds(lambda: forward(x, w).block_until_ready(), repeats),
        "input grad": best_seconds(lambda: input_grad(x, w, g).block_until_ready(), repeats),
        "weight grad": best_seconds(lambda: weight_grad(x, w, g).block_until_ready(), repeats),
    }


def _tensorflow(layer, batch: int, repeats: int, precision: str, xla: bool) -> dict[str, float]:
    import tensorflow as tf

    chosen = TRAINING_PRECISIONS[precision]
    tf.config.experimental.enable_tensor_float_32_execution(chosen.tf32)
    dtype = getattr(tf, chosen.compute)
    f, x, w = tensorflow_convolution(layer, batch, dtype)
    g = tf.cast(tf.random.normal(f(x, w).shape), dtype)

    def gradient(of_input: bool):
        def fn(x, w, g):  # the other gradient is not fetched, so the graph does not compute it
            with tf.GradientTape() as tape:
                tape.watch(x if of_input else w)
                y = f(x, w)
            return tape.gradient(y, x if of_input else w, output_gradients=g)

        return tf.function(fn, jit_compile=xla)

    forward, input_grad, weight_grad = tf.function(f, jit_compile=xla), gradient(True), gradient(False)
    return {
        "forward": best_seconds(lambda: forward(x, w).numpy(), repeats),
        "input grad": best_seconds(lambda: input_grad(x, w, g).numpy(), repeats),
        "weight grad": best_seconds(lambda: weight_grad(x, w, g).numpy(), repeats),
    }


def time_passes(
    kernels: str, preset: str, batch: int, repeats: int, precision: str = "float32", device: str = "cpu"
) -> list[dict]:
    """One row per convolution of `preset`: its three passes' best times in `kernels`."""
    rows = []
    for layer in conv_layers(preset, batch):
        if kernels in ("torch", "torch-nchw"):
            times = _torch(layer, batch, repeats, precision, device, channels_last=kernels == "torch")
        elif kernels in ("jax", "jax-lax"):
            times = _jax(layer, batch, repeats, precision, as_built=kernels == "jax")
        else:
            times = _tensorflow(layer, batch, repeats, precision, xla=kernels == "tensorflow-xla")
        rows.append({"layer": layer.name, **times})
    return rows


def as_times(rows: list[dict]) -> dict[tuple[str, str], float]:
    """`time_passes`'s rows as seconds by (layer, pass)."""
    return {(r["layer"], p): r[p] for r in rows for p in PASSES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="dcgan64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frameworks", nargs="+", choices=list(KERNELS), default=list(KERNELS))
    parser.add_argument("--worker", choices=list(KERNELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(time_passes(args.worker, args.preset, args.batch_size, args.repeats)))
        return 0
    results = {}
    for kernels in args.frameworks:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.layers", "--worker", kernels, "--preset", args.preset,
             "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout  # fmt: skip
        results[kernels] = as_times(json.loads(out.splitlines()[-1]))
    print(f"{args.preset}, batch {args.batch_size}, float32: ms per pass, best of {args.repeats}")
    print("| layer | pass | " + " | ".join(KERNELS[k][1] for k in results) + " |")
    print("|---|---|" + "---:|" * len(results))
    for layer in conv_layers(args.preset, args.batch_size):
        for p in PASSES:
            cells = [
                "" if (t := times.get((layer.name, p))) is None else f"{t * 1e3:.1f}" for times in results.values()
            ]
            print(f"| {layer.name} | {p} | " + " | ".join(cells) + " |")
    print("| **all** | | " + " | ".join(f"**{sum(times.values()) * 1e3:.0f}**" for times in results.values()) + " |")
    counts = pass_counts(make_config(args.preset, {"optim.batch_size": args.batch_size}))
    found = limit(results, counts)
    print("\nPer iteration (each pass as often as an iteration runs it), ms; the last column the best of each pass:")
    print("| pass | " + " | ".join(KERNELS[k][1] for k in results) + " | best of each |")
    print("|---|" + "---:|" * (len(results) + 1))
    by_kernels = {k: per_pass(times, counts) for k, times in results.items()}
    for p in PASSES:
        cells = [f"{by_kernels[k][p] * 1e3:.0f}" for k in results] + [f"{found['by_pass'][p] * 1e3:.0f}"]
        print(f"| {p} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(by_kernels[k].values()) * 1e3:.0f}**" for k in results] + [f"**{found['limit_s'] * 1e3:.0f}**"]
    print("| **iteration** | " + " | ".join(totals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
