"""What each training precision means, decided once for every framework: the dtype that
stores weights, Adam state, losses and BN statistics, the dtype convolutions and matmuls
compute in, and whether float32 ones may use TF32 tensor cores. Each backend applies the
decision in its framework's own terms: a dtype and torch.autocast in PyTorch, Flax's
dtype / param_dtype and jax_default_matmul_precision in JAX, floatx and a dtype policy in Keras.

"float32" is strict IEEE float32 on every device: on an NVIDIA GPU the frameworks' own
defaults use TF32 for some convolutions and matmuls (cuDNN's in PyTorch, all of them in JAX
and TensorFlow), so every backend turns TF32 off unless "tf32" is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    store: str  # weights, Adam's moments, losses and BN statistics: a float dtype's name
    compute: str  # convolutions and matmuls: `store`, or a narrower dtype (mixed precision)
    tf32: bool  # whether float32 convolutions and matmuls may run on TF32 tensor cores
    description: str

    @property
    def mixed(self) -> bool:
        """Whether the convolutions and matmuls compute in a narrower dtype than is stored."""
        return self.compute != self.store


# What a trainer can compute in: the parity suite's float32 and float64
# (common.backends.PRECISIONS), plus two that keep float32 weights, Adam state, losses and
# BN statistics and speed up only the convolutions and matmuls.
TRAINING_PRECISIONS: dict[str, Precision] = {
    "float32": Precision("float32", "float32", tf32=False, description="float32 throughout"),
    "float64": Precision("float64", "float64", tf32=False, description="float64 throughout (for the parity suite)"),
    "tf32": Precision(
        "float32",
        "float32",
        tf32=True,
        description="float32, with convolutions and matmuls on TF32 tensor cores (NVIDIA Ampere or newer GPUs only)",
    ),
    "bf16": Precision(
        "float32",
        "bfloat16",
        tf32=False,
        description="mixed precision: float32 weights, Adam, losses and BN statistics; "
        "convolutions and matmuls in bfloat16",
    ),
}
