"""Every pair of backends, check by check: the worst tensor of each check, its difference
scaled as TOLERANCES says, and the verdict against its tolerance. A check that a backend could
not compute (it raised, or the backend's worker failed) fails, whatever its tolerance: no
framework is excused from a check."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from common.backends import BACKENDS, PRECISIONS
from common.parity.tolerances import CHECKS, TOLERANCES, Scale


class TensorFile(Mapping):
    """The arrays of a safetensors file that common.parity.measurement wrote, each read from
    disk (as float64, exactly) only when it is asked for, and their shapes from the file's
    header: a backend's results need not be in memory all at once to be compared."""

    def __init__(self, path: Path):
        self.path = str(path)
        with safe_open(self.path, "np") as f:
            self.metadata: dict[str, str] = f.metadata() or {}
            self.shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.shapes:
            raise KeyError(key)
        with safe_open(self.path, "np") as f:  # opened for each array: nothing stays mapped
            return np.asarray(f.get_tensor(key), dtype=np.float64)

    def __contains__(self, key: object) -> bool:
        return key in self.shapes

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


@dataclass
class Measured:
    """One backend's results in one precision: arrays by name, and the checks whose computation raised."""

    backend: str
    arrays: Mapping[str, np.ndarray]  # a dict, or a TensorFile that reads each array when asked
    errors: dict[str, str]  # check -> error message

    @classmethod
    def open(cls, path: Path, backend: str) -> Measured:
        """What common.parity.measurement wrote, each array read from the file when it is asked
        for (the file must outlive the Measured), and the errors in the file's metadata."""
        arrays = TensorFile(path)
        return cls(backend, arrays, json.loads(arrays.metadata.get("errors", "{}")))

    @classmethod
    def read(cls, path: Path, backend: str) -> Measured:
        """What common.parity.measurement wrote, every array in memory (as float64)."""
        with safe_open(str(path), "np") as f:
            errors = json.loads((f.metadata() or {}).get("errors", "{}"))
        return cls(backend, {k: np.asarray(v, dtype=np.float64) for k, v in load_file(str(path)).items()}, errors)

    @classmethod
    def failed(cls, backend: str, message: str) -> Measured:
        """A backend whose worker failed: every check raised, with the message's first line (a
        worker's message goes on with its output, which `dcgan parity` prints once)."""
        return cls(backend, {}, {check: message.splitlines()[0] for check in CHECKS})


@dataclass(frozen=True)
class Comparison:
    """One check of one backend pair: the worst tensor, its difference (scaled as
    TOLERANCES says) and what that means."""

    check: str
    precision: str
    pair: tuple[str, str]
    key: str  # the tensor with the largest scaled difference; for a check that raised, the error
    diff: float  # inf: tensors missing or misshapen; nan: the check raised, or a tensor holds a NaN
    tolerance: float | None  # the check's limit; None: reported, not judged
    detail: str  # the values side by side, or what went wrong

    @property
    def passed(self) -> bool | None:
        """Whether the difference is within the tolerance; None for a check that is reported,
        not judged, unless it could not be compared at all (no finite difference), which fails."""
        if not math.isfinite(self.diff):
            return False
        if self.tolerance is None:
            return None
        return self.diff <= self.tolerance

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "info"}[self.passed]


def _shape(arrays: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    """An array's shape, from a TensorFile's header without reading it."""
    return arrays.shapes[key] if isinstance(arrays, TensorFile) else np.shape(arrays[key])


def _largest_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """The largest absolute difference of a and b, and where it is (a flat index)."""
    diff = np.asarray(np.subtract(a, b))  # an array even of 0-d arrays, which subtract to a scalar
    np.abs(diff, out=diff)  # in place: one array of the size of a, not two
    index = int(np.argmax(diff)) if diff.size else 0
    return (float(diff.flat[index]) if diff.size else 0.0), index


def compare(ma: Measured, mb: Measured, precision: str) -> list[Comparison]:
    """Every check of one pair of backends, in the order of CHECKS."""
    return compare_pairs([ma, mb], precision)[(0, 1)]


def compare_pairs(measured: Sequence[Measured], precision: str) -> dict[tuple[int, int], list[Comparison]]:
    """`compare` of every pair (i, j), i < j, of `measured`, each array read once from each
    backend however many pairs it is in: with TensorFiles (Measured.open), one array per
    backend is in memory at a time."""
    pairs = list(itertools.combinations(range(len(measured)), 2))
    found: dict[tuple[int, int], list[Comparison]] = {pair: [] for pair in pairs}
    for check, prefix in CHECKS.items():
        tolerance = TOLERANCES[precision][check]
        keys_of = {
            i: sorted(k for k in m.arrays if k.startswith(prefix))
            for i, m in enumerate(measured)
            if check not in m.errors
        }
        this_check: dict[tuple[int, int], Comparison] = {}
        judged: dict[tuple[int, int], list[str]] = {}  # the pairs whose tensors are compared, and their keys
        for i, j in pairs:
            ma, mb = measured[i], measured[j]
            names = (ma.backend, mb.backend)
            failed = [m for m in (ma, mb) if check in m.errors]
            if failed:
                error = "; ".join(f"{m.backend}: {m.errors[check]}" for m in failed)
                this_check[(i, j)] = Comparison(check, precision, names, error, float("nan"), tolerance.limit, error)
                continue
            keys = keys_of[i]
            missing = sorted(set(keys) ^ set(keys_of[j]))
            if missing or not keys:
                this_check[(i, j)] = Comparison(
                    check,
                    precision,
                    names,
                    ", ".join(missing[:3]) or prefix,
                    float("inf"),
                    tolerance.limit,
                    f"tensors present in one backend's results only: {missing[:6]}",
                )
                continue
            mismatched = [key for key in keys if _shape(ma.arrays, key) != _shape(mb.arrays, key)]
            if mismatched:
                key = mismatched[0]
                this_check[(i, j)] = Comparison(
                    check,
                    precision,
                    names,
                    key,
                    float("inf"),
                    tolerance.limit,
                    f"{key}: shape {_shape(ma.arrays, key)} on {names[0]}, {_shape(mb.arrays, key)} on {names[1]}",
                )
                continue
            judged[(i, j)] = keys

        # One pass over the tensors: each backend's array of each key read once, for all its pairs.
        largest: dict[tuple[int, int], dict[str, tuple[float, int]]] = {pair: {} for pair in judged}
        tensor_max: dict[int, dict[str, float]] = {i: {} for i in range(len(measured))}
        with_key: dict[str, list[tuple[int, int]]] = {}
        for pair, keys in judged.items():
            for key in keys:
                with_key.setdefault(key, []).append(pair)
        for key in sorted(with_key):
            tensors = {i: measured[i].arrays[key] for i in sorted({i for pair in with_key[key] for i in pair})}
            if tolerance.scale is not Scale.ABSOLUTE:
                for i, x in tensors.items():
                    tensor_max[i][key] = float(np.abs(x).max(initial=0))
            for i, j in with_key[key]:
                largest[(i, j)][key] = _largest_difference(tensors[i], tensors[j])
            del tensors

        for (i, j), keys in judged.items():
            ma, mb = measured[i], measured[j]
            if tolerance.scale is Scale.RELATIVE_TO_LAYER_MAX:
                layer_max_a, layer_max_b = _layer_scales(tensor_max[i], keys), _layer_scales(tensor_max[j], keys)
            worst_key, worst, worst_index = keys[0], -1.0, 0
            for key in keys:
                diff, index = largest[(i, j)][key]
                if tolerance.scale is Scale.RELATIVE_TO_TENSOR_MAX:
                    diff /= max(1.0, tensor_max[i][key], tensor_max[j][key])
                elif tolerance.scale is Scale.RELATIVE_TO_LAYER_MAX:
                    layer_max = max(layer_max_a[key], layer_max_b[key])
                    if layer_max:
                        diff /= layer_max
                if diff > worst or math.isnan(diff):  # a NaN is the worst difference there is
                    worst_key, worst, worst_index = key, diff, index
                    if math.isnan(diff):
                        break
            names = (ma.backend, mb.backend)
            this_check[(i, j)] = Comparison(
                check,
                precision,
                names,
                worst_key,
                worst,
                tolerance.limit,
                _side_by_side(check, prefix, worst_key, worst_index, ma.arrays, mb.arrays, names),
            )
        for pair in pairs:
            found[pair].append(this_check[pair])
    return found


def _layer_scales(tensor_max: dict[str, float], keys: list[str]) -> dict[str, float]:
    """The largest absolute value among the tensors of each key's layer (grad.<role>.<layer>.*),
    from each tensor's largest absolute value."""
    layer_of = {key: key.rsplit(".", 1)[0] for key in keys}
    scales: dict[str, float] = {}
    for key, layer in layer_of.items():
        scales[layer] = max(scales.get(layer, 0.0), tensor_max[key])
    return {key: scales[layer] for key, layer in layer_of.items()}


def _side_by_side(check: str, prefix: str, key: str, index: int, a: Mapping, b: Mapping, pair: tuple[str, str]) -> str:
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
    """Every pair of backends, in every precision they ran in."""
    comparisons = []
    backends = sorted({backend for backend, _ in results}, key=list(BACKENDS).index)
    for precision in precisions:
        comparisons += compare_precision(results, backends, precision)
    return comparisons


def compare_precision(
    results: dict[tuple[str, str], Measured | str], backends: Sequence[str], precision: str
) -> list[Comparison]:
    """compare_all's comparisons in one precision: every pair of `backends` (in their order)
    that ran in it. A backend whose worker failed (its result a message) fails every check
    against every other."""
    measured = [
        m if isinstance(m, Measured) else Measured.failed(b, m)
        for b in backends
        if (m := results.get((b, precision))) is not None
    ]
    by_pair = compare_pairs(measured, precision)
    return [c for pair in itertools.combinations(range(len(measured)), 2) for c in by_pair[pair]]
