"""Every check's computation on one backend (`measure`, in a worker), and on every backend
and precision at once, compared as the workers finish (`run_compared`, one worker each)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from common import canonical
from common.algorithm import METRICS
from common.backends import BACKENDS, PRECISIONS, load_backend
from common.config import Config, toml_overrides
from common.parity.comparison import Comparison, Measured, compare_precision
from common.parity.inputs import ITERATIONS, Inputs, feature_network_inputs, make_inputs, parity_config
from common.parity.workers import Job, Key, run_workers
from common.presets import make_config


def measure(
    backend_name: str, precision: str, config: Config, state: dict[str, np.ndarray], inputs: Inputs
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Runs every check's computation on one backend (in this process); see common/parity/__init__.py.

    A check whose computation raises is recorded in the errors returned, check -> the
    message, and the others still run; the comparison fails it (common.parity.comparison)."""
    backend = load_backend(backend_name, precision)
    dtype = np.float64 if precision == "float64" else np.float32
    cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
    train_config = parity_config(config)
    trainer = backend.trainer(train_config)
    # The preset as it is: dropout is the identity in eval mode. Without dropout it is the
    # trainer just built (every check loads `state` first), which saves building it twice.
    eval_trainer = trainer if train_config == config else backend.trainer(config)
    out: dict[str, np.ndarray] = {}

    def forward(mode: str, model) -> None:
        model.load_state_dict(state)
        names = {role: {layer.name for layer in spec.layers} for role, spec in canonical.specs(model.config).items()}
        for role, x in (("generator", inputs.z), ("discriminator", inputs.real)):
            for name, _, y in backend.run_layers(getattr(model, role), cast(x), training=mode == "train"):
                if name in names[role]:  # Keras's helper layers (`reshape1_chw`) have no counterpart
                    out[f"forward.{mode}.{role}.{name}"] = canonical.nhwc_to_nchw(y) if backend.layout == "NHWC" else y

    def gradients() -> None:
        trainer.load_state_dict(state)
        out.update({f"grad.{k}": v for k, v in trainer.gradients(cast(inputs.real), cast(inputs.z)).items()})

    def adam_update() -> None:
        # Adam's step does not depend on the parameter's value, so from zero weights the new
        # weights are minus the update itself, unblurred by rounding at the weights' magnitude.
        trainable = [e for e in canonical.entries(train_config) if e.trainable]
        trainer.load_state_dict({**state, **{e.key: np.zeros(e.shape) for e in trainable}})
        trainer.apply_gradients({k: cast(v) for k, v in inputs.grads.items()})
        after = trainer.state_dict()
        out.update({f"update.{e.key}": after[e.key] for e in trainable})

    def iterations() -> None:
        trainer.load_state_dict(state)
        metrics: dict[str, list[float]] = {name: [] for name in METRICS}
        for i in range(ITERATIONS):
            z_g = None if inputs.z_g is None else cast(inputs.z_g[i])
            result = trainer.train_step(cast(inputs.reals[i]), cast(inputs.z_d[i]), z_g)
            for name in METRICS:
                metrics[name].append(float(result[name]))
            if i in (0, ITERATIONS - 1):
                prefix = "step1." if i == 0 else "steps5."
                out.update({prefix + k: v for k, v in trainer.state_dict().items() if not k.startswith("rng.")})
        out.update({f"step1.{name}": np.array(values[:1]) for name, values in metrics.items()})
        out.update({f"steps5.{name}": np.array(values) for name, values in metrics.items()})

    errors = {}
    for checks, run_check in (
        (("forward (train)",), lambda: forward("train", trainer)),
        (("forward (eval)",), lambda: forward("eval", eval_trainer)),
        (("gradients",), gradients),
        (("Adam update",), adam_update),
        (("1 iteration", "5 iterations"), iterations),
    ):
        try:
            run_check()
        except Exception as err:  # noqa: BLE001 - recorded and reported per check, not hidden
            errors.update({check: f"{type(err).__name__}: {err}".splitlines()[0] for check in checks})
    return {k: _stored(v) for k, v in out.items()}, errors


def _stored(value) -> np.ndarray:
    """A result as it is written: float32 stays float32 (half the bytes; a reader widens it to
    float64 exactly, Measured.read and .open), everything else becomes float64."""
    array = np.asarray(value)
    return np.ascontiguousarray(array if array.dtype == np.float32 else array.astype(np.float64, copy=False))


def measure_feature_network(
    backend_name: str, precision: str, state: dict[str, np.ndarray], images: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`dcgan eval`'s feature network on one backend, holding `state`, in eval mode: the
    features and logits of `images` (N, 1, 28, 28), as `measure` returns its checks'."""
    dtype = np.float64 if precision == "float64" else np.float32
    try:
        features, logits = load_backend(backend_name, precision).feature_network(state)(images.astype(dtype))
    except Exception as err:  # noqa: BLE001 - recorded and reported as the check's, not hidden
        return {}, {"feature network": f"{type(err).__name__}: {err}".splitlines()[0]}
    return {"feature_network.features": _stored(features), "feature_network.logits": _stored(logits)}, {}


def work(job: Job) -> None:
    """A worker's part: every case of the job on its backend and precision. The feature
    network, which no case changes, is measured once and reported with each case."""
    images = job.arrays("feature_network.images")["images"]
    features, feature_errors = measure_feature_network(
        job.backend, job.precision, job.arrays("feature_network.state"), images
    )
    for name, case in job.spec["cases"].items():
        config = make_config(case["preset"], toml_overrides(case["config"]))
        inputs = Inputs.from_arrays(job.arrays(f"{name}.inputs"))
        arrays, errors = measure(job.backend, job.precision, config, job.arrays(f"{name}.state"), inputs)
        arrays, errors = {**arrays, **features}, {**errors, **feature_errors}
        save_file(arrays, str(job.out / f"{name}.safetensors"), metadata={"errors": json.dumps(errors)})


# The per-iteration metrics of the training checks: all that `run_compared` keeps of the arrays.
METRIC_KEYS = tuple(f"{prefix}.{name}" for prefix in ("step1", "steps5") for name in METRICS)


@dataclass
class Compared:
    """One case measured on every backend and precision, and compared."""

    results: dict[Key, Measured | str]  # each worker's metrics (METRIC_KEYS) and errors, or its error message
    comparisons: list[Comparison]  # compare_all's of the full results, in its order


def run_compared(
    cases: dict[str, tuple[Config, dict[str, np.ndarray]]],
    backends=tuple(BACKENDS),
    precisions=PRECISIONS,
    batch_size: int = 4,
    parallel: int | None = None,
    seed: int = 0,
    log=print,
) -> dict[str, Compared]:
    """Measures every case (name -> (config, canonical state)) on every backend and precision,
    one process per (backend, precision), `parallel` at a time, and `compare_all`s each case
    without holding the results: each precision is compared as soon as its last worker is
    done, from the workers' files, which are read array by array (Measured.open); what is kept
    of the arrays is the metrics of each iteration (METRIC_KEYS, for `report.trajectories`)."""
    order = sorted(set(backends), key=list(BACKENDS).index)  # compare_all's order of the backends
    lock = threading.Lock()
    finished: dict[Key, dict[str, Measured | str] | str] = {}
    kept: dict[Key, dict[str, Measured | str] | str] = {}
    comparisons: dict[tuple[str, str], list[Comparison]] = {}  # (case, precision) -> comparisons

    def done(key: Key, found: dict[str, Measured | str] | str) -> None:
        precision = key[1]
        with lock:
            finished[key] = found
            ready = [(backend, precision) for backend in order]
            if any(k not in finished for k in ready):  # not the precision's last worker yet
                return
        for name in cases:
            results = {k: finished[k] if isinstance(finished[k], str) else finished[k][name] for k in ready}
            comparisons[(name, precision)] = compare_precision(results, order, precision)
        for k in ready:
            kept[k] = finished[k] if isinstance(finished[k], str) else {n: _metrics(m) for n, m in finished[k].items()}

    _run(cases, backends, precisions, batch_size, parallel, seed, log, done)
    keys = [(backend, precision) for backend in backends for precision in precisions]
    return {
        name: Compared(
            {key: kept[key] if isinstance(kept[key], str) else kept[key][name] for key in keys},
            [c for precision in precisions for c in comparisons[(name, precision)]],
        )
        for name in cases
    }


def _metrics(measured: Measured | str) -> Measured | str:
    """A worker's results less every array but the per-iteration metrics."""
    if isinstance(measured, str):
        return measured
    arrays = {key: measured.arrays[key] for key in METRIC_KEYS if key in measured.arrays}
    return Measured(measured.backend, arrays, measured.errors)


def _run(cases, backends, precisions, batch_size, parallel, seed, log, done) -> dict:
    """The workers of `run_compared`: {(backend, precision): {case: its results, opened
    (Measured.open), or a message}, or the worker's error}."""
    job = {
        "cases": {name: {"preset": config.preset, "config": config.to_toml()} for name, (config, _) in cases.items()}
    }
    arrays = feature_network_inputs(batch_size, seed)
    for name, (config, state) in cases.items():
        arrays[f"{name}.state"] = {k: v for k, v in state.items() if not k.startswith("rng.")}
        arrays[f"{name}.inputs"] = make_inputs(config, batch_size, seed).arrays()

    def read(out: Path, key: Key) -> dict[str, Measured | str]:
        found = {name: out / f"{name}.safetensors" for name in cases}
        return {
            name: Measured.open(path, key[0]) if path.exists() else f"{key}: no result" for name, path in found.items()
        }

    keys = [(backend, precision) for backend in backends for precision in precisions]
    return run_workers("measure", job, keys, read, arrays, parallel=parallel, log=log, done=done)
