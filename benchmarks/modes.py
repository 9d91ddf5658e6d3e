"""What the benchmarks can time: modes (a backend and its compiler), precisions, devices.

A mode is one way of running the training iteration. Every mode but `reference-loop` is the
project's own trainer (`common.backends`), built with one of its backend's COMPILERS;
`reference-loop` is the tutorials' PyTorch loop (benchmarks/reference_loop.py), the
baseline every speed-up is given against. Each mode names the convolution kernels it runs
(`kernels`, a benchmarks.layers.KERNELS name), which the limit is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError
from common.precision import TRAINING_PRECISIONS


@dataclass(frozen=True)
class Mode:
    name: str
    backend: str  # a common.backends.BACKENDS name
    compile: str | None  # one of that backend's COMPILERS, or None for its default step
    about: str
    kernels: str  # the benchmarks.layers.KERNELS its convolutions run through
    gpu_only: str = ""  # why the mode only means something on a GPU ("" when it runs anywhere)


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode(
            "reference-loop",
            "torch",
            None,
            "the PyTorch tutorial's loop: eager, NCHW, .item() calls each step",
            "torch-nchw",
        ),
        Mode("torch-eager", "torch", None, "pytorch_impl, eager, channels-last", "torch"),
        Mode("torch-compile", "torch", "default", "pytorch_impl under torch.compile (Inductor, default mode)", "torch"),
        Mode(
            "torch-compile-max-autotune",
            "torch",
            "max-autotune-no-cudagraphs",
            "torch.compile mode max-autotune-no-cudagraphs (Inductor tries kernel templates)",
            "torch",
        ),
        Mode(
            "torch-compile-reduce-overhead",
            "torch",
            "reduce-overhead",
            "torch.compile mode reduce-overhead",
            "torch",
            gpu_only="reduce-overhead is CUDA graphs, which only exist on NVIDIA GPUs",
        ),
        Mode("jax-jit", "jax", None, "jax_impl: the whole iteration as one nnx.jit program", "jax"),
        Mode(
            "keras-tensorflow",
            "keras-tensorflow",
            None,
            "keras_impl on TensorFlow, tf.function, jit_compile off",
            "tensorflow",
        ),
        Mode(
            "keras-tensorflow-xla",
            "keras-tensorflow",
            "xla",
            "keras_impl on TensorFlow, jit_compile on (XLA)",
            "tensorflow-xla",
        ),
        Mode("keras-jax", "keras-jax", None, "keras_impl on JAX (jax.jit)", "jax"),
        Mode("keras-torch", "keras-torch", None, "keras_impl on torch (eager, channels-last views)", "torch"),
    )
}

# The trainer's precisions (common.precision.TRAINING_PRECISIONS, the names `dcgan train
# --precision` takes) but float64, which exists for the parity suite, not for speed.
PRECISIONS = tuple(p for p in TRAINING_PRECISIONS if p != "float64")
# Names earlier versions of the benchmark used, and the precision each means now: still
# accepted by `--precision` and read from recorded runs' JSON.
OLD_PRECISIONS = {"fp32": "float32"}
DEVICES = ("cpu", "gpu")


def skip_reason(mode: Mode, precision: str, device: str, cpu_flags: set[str] | frozenset = frozenset()) -> str:
    """Why `mode` cannot run at `precision` on `device`, known before starting it ("" if it can).
    Whether the frameworks see a GPU is only known inside a worker, which reports it."""
    if mode.gpu_only and device != "gpu":
        return mode.gpu_only
    if precision == "tf32" and device != "gpu":
        return "TF32 is a tensor-core format of NVIDIA GPUs (Ampere or newer)"
    if mode.name == "reference-loop" and precision != "float32":
        return "the tutorials' loop is float32, the baseline of every speed-up"
    if precision == "bf16" and device == "cpu" and not {"avx512_bf16", "amx_bf16"} & set(cpu_flags):
        return "this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16), so bf16 would be emulated"
    return ""


def parse_modes(names: list[str] | None) -> list[Mode]:
    if not names:
        return list(MODES.values())
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise ConfigError("--modes", unknown[0], "one of " + ", ".join(MODES))
    return [MODES[n] for n in names]
