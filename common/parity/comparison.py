"""Every pair of backends, check by check: the worst tensor of each check, its difference
scaled as TOLERANCES says, and the verdict against its tolerance."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from common.backends import BACKENDS, PRECISIONS
from common.parity.tolerances import CHECKS, TOLERANCES, Scale

# Checks a framework cannot run, with the error that says so; reported as "not run", not
# as agreement. PyTorch's CPU float64 convolution (slow_conv2d) fails its weight gradient
# when the weight is a permuted view with one output channel, which is what Keras's torch
# backend passes for D's last convolution (HWIO kernel, permuted to OIHW): reproduced in
# plain PyTorch 2.14 with F.conv2d(x, k.permute(3, 2, 0, 1)) on a (4, 4, C, 1) kernel.
KNOWN_LIMITS = {("keras-torch", "float64"): "slow_conv2d: grad_weight must be contiguous"}


@dataclass
class Measured:
    """One backend's results in one precision: arrays by name, and the checks it could not run."""

    backend: str
    arrays: dict[str, np.ndarray]
    errors: dict[str, str]  # check -> error message

    @classmethod
    def read(cls, path: Path, backend: str) -> Measured:
        """What common.parity.measurement wrote: the arrays, and the errors in the file's metadata."""
        with safe_open(str(path), "np") as f:
            errors = json.loads((f.metadata() or {}).get("errors", "{}"))
        return cls(backend, load_file(str(path)), errors)

    def known_limit(self, check: str, precision: str) -> bool:
        limit = KNOWN_LIMITS.get((self.backend, precision))
        return check in self.errors and limit is not None and limit in self.errors[check]


@dataclass(frozen=True)
class Comparison:
    """One check of one backend pair: the worst tensor, its difference (scaled as
    TOLERANCES says) and what that means."""

    check: str
    precision: str
    pair: tuple[str, str]
    key: str  # the tensor with the largest scaled difference
    diff: float
    tolerance: float | None  # the check's limit; None: reported, not judged
    detail: str  # the values side by side, or why the check did not run
    not_run: bool = False  # a known limit of a framework (KNOWN_LIMITS) stopped it

    @property
    def passed(self) -> bool | None:
        if self.not_run or self.tolerance is None:
            return None
        return self.diff <= self.tolerance

    @property
    def verdict(self) -> str:
        if self.not_run:
            return "not run"
        return {True: "pass", False: "FAIL", None: "info"}[self.passed]


def _scaled(scale: Scale, a: np.ndarray, b: np.ndarray, layer_max: float = 0.0) -> tuple[float, int]:
    """The largest difference of a and b, scaled by `scale`, and where it is.

    `layer_max` is the largest gradient of the tensor's layer, for Scale.RELATIVE_TO_LAYER_MAX."""
    diff = np.abs(a - b)
    index = int(np.argmax(diff)) if diff.size else 0
    worst = float(diff.flat[index]) if diff.size else 0.0
    if scale is Scale.RELATIVE_TO_TENSOR_MAX:
        worst /= max(1.0, float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    elif scale is Scale.RELATIVE_TO_LAYER_MAX and layer_max:
        worst /= layer_max
    return worst, index


def _layer_scales(arrays: dict[str, np.ndarray], keys: list[str]) -> dict[str, float]:
    """The largest absolute value among the tensors of each key's layer (grad.<role>.<layer>.*)."""
    layer_of = {key: key.rsplit(".", 1)[0] for key in keys}
    scales: dict[str, float] = {}
    for key, layer in layer_of.items():
        scales[layer] = max(scales.get(layer, 0.0), float(np.abs(arrays[key]).max(initial=0)))
    return {key: scales[layer] for key, layer in layer_of.items()}


def compare(ma: Measured, mb: Measured, precision: str) -> list[Comparison]:
    pair, a, b = (ma.backend, mb.backend), ma.arrays, mb.arrays
    comparisons = []
    for check, prefix in CHECKS.items():
        tolerance = TOLERANCES[precision][check]
        failed = [m for m in (ma, mb) if check in m.errors]
        if failed:
            known = all(m.known_limit(check, precision) for m in failed)
            comparisons.append(
                Comparison(
                    check,
                    precision,
                    pair,
                    "-",
                    float("nan"),
                    tolerance.limit,
                    "; ".join(f"{m.backend}: {m.errors[check]}" for m in failed),
                    not_run=known,
                )
            )
            continue
        keys = sorted(k for k in a if k.startswith(prefix))
        missing = sorted(set(keys) ^ {k for k in b if k.startswith(prefix)})
        if missing or not keys:
            comparisons.append(
                Comparison(
                    check,
                    precision,
                    pair,
                    ", ".join(missing[:3]) or prefix,
                    float("inf"),
                    tolerance.limit,
                    f"tensors present in one backend's results only: {missing[:6]}",
                )
            )
            continue
        worst_key, worst, worst_index = keys[0], -1.0, 0
        if any(a[key].shape != b[key].shape for key in keys):
            key = next(key for key in keys if a[key].shape != b[key].shape)
            comparisons.append(
                Comparison(
                    check,
                    precision,
                    pair,
                    key,
                    float("inf"),
                    tolerance.limit,
                    f"{key}: shape {a[key].shape} on {pair[0]}, {b[key].shape} on {pair[1]}",
                )
            )
            continue
        scales_a, scales_b = _layer_scales(a, keys), _layer_scales(b, keys)
        for key in keys:
            diff, index = _scaled(tolerance.scale, a[key], b[key], max(scales_a[key], scales_b[key]))
            if diff > worst:
                worst_key, worst, worst_index = key, diff, index
        comparisons.append(
            Comparison(
                check,
                precision,
                pair,
                worst_key,
                worst,
                tolerance.limit,
                _side_by_side(check, prefix, worst_key, worst_index, a, b, pair),
            )
        )
    return comparisons


def _side_by_side(check: str, prefix: str, key: str, index: int, a: dict, b: dict, pair: tuple[str, str]) -> str:
    x, y = a[key], b[key]
    where = np.unravel_index(index, x.shape) if x.ndim else ()
    lines = [f"{key}{list(map(int, where))}: {pair[0]} {x[where]!r}, {pair[1]} {y[where]!r}"]
    if check in ("1 iteration", "5 iterations"):
        for metric in ("loss_D", "loss_G"):
            lines.append(
                f"{metric} per step: {pair[0]} {a[prefix + metric].tolist()}; {pair[1]} {b[prefix + metric].tolist()}"
            )
    return "\n".join(lines)


def compare_all(results: dict[tuple[str, str], Measured | str], precisions=PRECISIONS) -> list[Comparison]:
    """Every pair of backends that produced results, in every precision."""
    comparisons = []
    backends = sorted({backend for backend, _ in results}, key=list(BACKENDS).index)
    for precision in precisions:
        for pair in itertools.combinations(backends, 2):
            a, b = results.get((pair[0], precision)), results.get((pair[1], precision))
            if isinstance(a, Measured) and isinstance(b, Measured):
                comparisons += compare(a, b, precision)
    return comparisons
