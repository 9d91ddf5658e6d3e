"""Where a step's time goes: each convolution of the model, timed alone, in PyTorch and JAX.

    python -m benchmarks.layers --preset dcgan64 --batch-size 64

A training iteration is mostly its convolutions' three passes: the forward, the gradient
with respect to the input (what backpropagation passes on) and the one with respect to the
weights. When one backend's step is slower than another's, timing each of those alone, in
the layouts and calls the builds use (benchmarks/convolutions.py; PyTorch's passes through
`aten.convolution_backward`, JAX's through jax.vjp under jit, for a transposed convolution
both lax's own and jax_impl/conv_transpose.py's), shows which pass of which layer is
responsible. Each framework runs in its own process, float32, best of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.convolutions import jax_convolution, torch_convolution
from benchmarks.peak import best_seconds
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec

PASSES = ("forward", "input grad", "weight grad")


def conv_layers(preset: str, batch_size: int):
    config = make_config(preset, {"optim.batch_size": batch_size})
    for spec in (generator_spec(config.model), discriminator_spec(config.model)):
        for layer in spec.layers:
            if layer.kind in ("conv", "conv_transpose"):
                yield layer


def _torch(layer, batch: int, repeats: int) -> dict[str, float]:
    import torch

    conv, x, w = torch_convolution(layer, batch, torch.float32)
    s, p = (layer.stride,) * 2, (layer.padding,) * 2
    transposed = layer.kind == "conv_transpose"
    with torch.no_grad():
        g = torch.randn_like(conv(x, w)).contiguous(memory_format=torch.channels_last)

        def backward(mask):
            return lambda: torch.ops.aten.convolution_backward(g, x, w, None, s, p, (1, 1), transposed, (0, 0), 1, mask)

        return {
            "forward": best_seconds(lambda: conv(x, w), repeats),
            "input grad": best_seconds(backward([True, False, False]), repeats),
            "weight grad": best_seconds(backward([False, True, False]), repeats),
        }


def _jax(layer, batch: int, repeats: int, custom: bool) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    keys = jax.random.split(jax.random.key(0), 2)
    f, x, w = jax_convolution(layer, batch, jnp.float32, keys[0], custom_vjp=custom)
    g = jax.random.normal(keys[1], jax.eval_shape(f, x, w).shape)
    forward = jax.jit(f)
    input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: f(x, w), x)[1](g)[0])
    weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: f(x, w), w)[1](g)[0])
    return {
        "forward": best_seconds(lambda: forward(x, w).block_until_ready(), repeats),
        "input grad": best_seconds(lambda: input_grad(x, w, g).block_until_ready(), repeats),
        "weight grad": best_seconds(lambda: weight_grad(x, w, g).block_until_ready(), repeats),
    }


def worker(framework: str, preset: str, batch: int, repeats: int) -> list[dict]:
    rows = []
    for layer in conv_layers(preset, batch):
        if framework == "jax-lax" and layer.kind != "conv_transpose":
            continue  # the same as "jax": only transposed convolutions differ
        if framework == "torch":
            times = _torch(layer, batch, repeats)
        else:
            times = _jax(layer, batch, repeats, custom=framework == "jax")
        rows.append({"layer": layer.name, **times})
    return rows


FRAMEWORKS = {
    "torch": "PyTorch (channels-last)",
    "jax": "JAX (as jax_impl builds it)",
    "jax-lax": "JAX, lax.conv_transpose's own gradient",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="dcgan64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS))
    parser.add_argument("--worker", choices=list(FRAMEWORKS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.preset, args.batch_size, args.repeats)))
        return 0
    results = {}
    for framework in args.frameworks:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.layers",
                "--worker",
                framework,
                "--preset",
                args.preset,
                "--batch-size",
                str(args.batch_size),
                "--repeats",
                str(args.repeats),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[framework] = {(r["layer"], p): r[p] for r in json.loads(out.splitlines()[-1]) for p in PASSES}
    print(f"{args.preset}, batch {args.batch_size}, float32: ms per pass, best of {args.repeats}")
    print("| layer | pass | " + " | ".join(FRAMEWORKS[f] for f in args.frameworks) + " |")
    print("|---|---|" + "---:|" * len(args.frameworks))
    totals = dict.fromkeys(args.frameworks, 0.0)
    for layer in conv_layers(args.preset, args.batch_size):
        for p in PASSES:
            cells = []
            for f in args.frameworks:
                t = results[f].get((layer.name, p), results.get("jax", {}).get((layer.name, p)))
                totals[f] += t or 0.0
                cells.append("" if t is None else f"{t * 1e3:.1f}")
            print(f"| {layer.name} | {p} | " + " | ".join(cells) + " |")
    print("| **all** | | " + " | ".join(f"**{totals[f] * 1e3:.0f}**" for f in args.frameworks) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
