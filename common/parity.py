"""Numeric parity: the same weights and inputs through every backend, compared pair by pair.

Each backend runs in a process of its own (Keras fixes its backend per process; JAX and Keras
take float64 process-wide), all starting from one canonical state and the same inputs, and
reports, under canonical names and layouts:

    forward.train.<role>.<layer>   every layer's output, train mode (batch statistics)
    forward.eval.<role>.<layer>    the same in eval mode (running statistics)
    grad.<role>.<layer>.<param>    d loss_D / d D's parameters and d loss_G / d G's
    update.<canonical key>         one Adam update of every parameter from given gradients and state
    step1.<canonical key>          the whole state after one training iteration (k D updates + G update)
    steps5.<canonical key>         ... after five iterations on shared batches and noise
    steps5.<metric>                the metrics of each of the five iterations

`compare` then holds every pair of backends to the tolerances of TOLERANCES. In float64, two
correct implementations of one algorithm agree to ~1e-11, so 1e-9 leaves room for nothing
but rounding: a larger difference is a different algorithm (a momentum convention, an
epsilon, a padding). In float32 the checks follow what float32 can promise: forward and
gradients relative to their scale, the Adam update from identical inputs; the trajectory
after Adam steps is reported, not judged (Adam's first steps move each parameter by about
lr·sign(g), and the sign of a tiny gradient follows summation order).

Dropout is random in each framework's own way, so train-mode checks run the preset with
dropout removed (`parity_config`); eval mode, where dropout is the identity, is what the
preset itself computes. tests/parity/test_numeric.py and `dcgan parity` both run this.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from common import canonical
from common.algorithm import METRICS
from common.backends import BACKENDS, PRECISIONS, load_backend
from common.config import Config, toml_overrides
from common.presets import make_config

ITERATIONS = 5
ROOT = Path(__file__).resolve().parents[1]

# check -> the prefix of the measured arrays it compares
CHECKS = {
    "forward (train)": "forward.train.",
    "forward (eval)": "forward.eval.",
    "gradients": "grad.",
    "Adam update": "update.",
    "1 iteration": "step1.",
    "5 iterations": "steps5.",
}
# tolerance per precision and check; None: reported, not judged
TOLERANCES = {
    "float64": {check: 1e-9 for check in CHECKS},
    "float32": {"forward (train)": 1e-5, "forward (eval)": 1e-5, "gradients": 1e-4, "Adam update": 1e-7,
                "1 iteration": None, "5 iterations": None},
}
MEASURES = {  # how a difference is scaled before it meets its tolerance
    "float64": {check: "absolute" for check in CHECKS},
    "float32": {"forward (train)": "relative to max(1, the tensor's largest value)",
                "forward (eval)": "relative to max(1, the tensor's largest value)",
                "gradients": "relative to the largest gradient of the tensor's layer",
                "Adam update": "absolute", "1 iteration": "absolute", "5 iterations": "absolute"},
}


# --------------------------------------------------------------------------- inputs


def parity_config(config: Config) -> Config:
    """The config with dropout removed, for the train-mode checks (see the module docstring)."""
    model = config.model
    strip = lambda blocks: tuple(dataclasses.replace(b, dropout=0.0) for b in blocks)  # noqa: E731
    return dataclasses.replace(config, model=dataclasses.replace(
        model, generator=strip(model.generator), discriminator=strip(model.discriminator)))


def random_state(config: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """A canonical float64 state unlike any initialisation: non-zero biases and BN offsets,
    BN running statistics away from 0 and 1, and Adam three steps in with non-zero moments,
    so that every tensor's mapping, not only the weights', is exercised."""
    rng = np.random.default_rng([seed, 7])
    arrays: dict[str, np.ndarray] = {}
    for entry in canonical.entries(config):
        shape = entry.shape
        if entry.name == "weight" and entry.layer.kind != "batch_norm":
            arrays[entry.key] = rng.normal(0.0, config.model.init_std, shape)
        elif entry.name == "weight":
            arrays[entry.key] = rng.normal(1.0, 0.1, shape)
        elif entry.name == "running_var":
            arrays[entry.key] = rng.uniform(0.5, 1.5, shape)
        else:  # bias, BN offset, running mean
            arrays[entry.key] = rng.normal(0.0, 0.1, shape)
    for role in canonical.ROLES:
        arrays[canonical.step_key(role)] = np.array(3, dtype=np.int64)
        for entry in canonical.parameters(config, role):
            m = rng.normal(0.0, 1e-3, entry.shape)
            arrays[canonical.moment_key(role, "exp_avg", entry)] = m
            arrays[canonical.moment_key(role, "exp_avg_sq", entry)] = m**2 + rng.uniform(0.0, 1e-6, entry.shape)
    return arrays


@dataclass
class Inputs:
    """What every backend is given: batches and noise for the forward and gradient checks
    and for ITERATIONS training iterations, and gradients for the Adam check (float64)."""

    real: np.ndarray  # (N, C, H, W)
    z: np.ndarray  # (N, latent)
    reals: np.ndarray  # (ITERATIONS, k, N, C, H, W)
    z_d: np.ndarray  # (ITERATIONS, k, N, latent)
    z_g: np.ndarray | None  # (ITERATIONS, N, latent), or None for "reuse"
    grads: dict[str, np.ndarray]

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"real": self.real, "z": self.z, "reals": self.reals, "z_d": self.z_d}
        if self.z_g is not None:
            out["z_g"] = self.z_g
        return {**out, **{f"grad.{k}": v for k, v in self.grads.items()}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Inputs:
        grads = {k.removeprefix("grad."): v for k, v in arrays.items() if k.startswith("grad.")}
        return cls(arrays["real"], arrays["z"], arrays["reals"], arrays["z_d"], arrays.get("z_g"), grads)


def make_inputs(config: Config, batch_size: int, seed: int = 0) -> Inputs:
    rng = np.random.default_rng([seed, 11])
    m, k = config.model, config.optim.d_steps
    image = (m.channels, m.image_size, m.image_size)

    def noise(*shape):
        if m.latent_dist == "uniform":
            return rng.uniform(-1.0, 1.0, (*shape, m.latent_dim))
        return rng.standard_normal((*shape, m.latent_dim))

    grads = {}
    for role in canonical.ROLES:  # gradients over six orders of magnitude, some below Adam's eps
        for entry in canonical.parameters(config, role):
            grads[entry.key] = rng.standard_normal(entry.shape) * 10.0 ** rng.uniform(-9, -3, entry.shape)
    return Inputs(
        real=rng.uniform(-1.0, 1.0, (batch_size, *image)),
        z=noise(batch_size),
        reals=rng.uniform(-1.0, 1.0, (ITERATIONS, k, batch_size, *image)),
        z_d=noise(ITERATIONS, k, batch_size),
        z_g=noise(ITERATIONS, batch_size) if config.optim.g_fake_batch == "fresh" else None,
        grads=grads,
    )


# --------------------------------------------------------------------------- one backend


def measure(backend_name: str, precision: str, config: Config, state: dict[str, np.ndarray],
            inputs: Inputs) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Runs every check's computation on one backend (in this process); see the module docstring.

    A check whose computation raises (a framework that cannot run it) is recorded as
    `error.<check>` holding the message, and the others still run."""
    backend = load_backend(backend_name, precision)
    dtype = np.float64 if precision == "float64" else np.float32
    cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
    train_config = parity_config(config)
    trainer = backend.trainer(train_config)
    eval_trainer = backend.trainer(config)  # the preset as it is: dropout is the identity in eval mode
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
    for checks, run_check in ((("forward (train)",), lambda: forward("train", trainer)),
                              (("forward (eval)",), lambda: forward("eval", eval_trainer)),
                              (("gradients",), gradients), (("Adam update",), adam_update),
                              (("1 iteration", "5 iterations"), iterations)):
        try:
            run_check()
        except Exception as err:  # noqa: BLE001 - recorded and reported per check, not hidden
            errors.update({check: f"{type(err).__name__}: {err}".splitlines()[0] for check in checks})
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for k, v in out.items()}
    return arrays, errors


def _worker(job_dir: Path, backend: str, precision: str) -> None:
    """Entry point of one worker process: every preset of the job on one backend."""
    job = json.loads((job_dir / "job.json").read_text())
    for name, preset in job["presets"].items():
        config = make_config(preset["preset"], toml_overrides(preset["config"]))
        state = load_file(str(job_dir / f"{name}.state.safetensors"))
        inputs = Inputs.from_arrays(load_file(str(job_dir / f"{name}.inputs.safetensors")))
        arrays, errors = measure(backend, precision, config, state, inputs)
        save_file(arrays, str(job_dir / f"{name}.{backend}.{precision}.safetensors"), metadata={"errors": json.dumps(errors)})


# --------------------------------------------------------------------------- all backends


def run(cases: dict[str, tuple[Config, dict[str, np.ndarray]]], backends=tuple(BACKENDS), precisions=PRECISIONS,
        batch_size: int = 4, parallel: int | None = None, seed: int = 0, log=print) -> dict:
    """Measures every case (name -> (config, canonical state)) on every backend and precision,
    one process per (backend, precision), `parallel` at a time. Returns
    {case: {(backend, precision): arrays or an error message}}."""
    with tempfile.TemporaryDirectory(prefix="dcgan-parity-") as tmp:
        job_dir = Path(tmp)
        job = {"presets": {}}
        for name, (config, state) in cases.items():
            job["presets"][name] = {"preset": config.preset, "config": config.to_toml()}
            save_file({k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in state.items() if not k.startswith("rng.")},
                      str(job_dir / f"{name}.state.safetensors"))
            inputs = make_inputs(config, batch_size, seed).arrays()
            save_file({k: np.ascontiguousarray(v) for k, v in inputs.items()}, str(job_dir / f"{name}.inputs.safetensors"))
        (job_dir / "job.json").write_text(json.dumps(job))

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
        keys = list(itertools.product(backends, precisions))

        def work(key: tuple[str, str]) -> str | None:
            """Runs one worker; its error report, or None."""
            done = subprocess.run([sys.executable, "-m", "common.parity", "--worker", str(job_dir), *key],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log(f"  {key[0]} {key[1]}: " + ("FAILED" if done.returncode else "done"))
            return f"{key[0]} ({key[1]}) worker exited {done.returncode}:\n{done.stdout[-4000:]}" if done.returncode else None

        with ThreadPoolExecutor(max_workers=parallel or max(1, min(len(keys), os.cpu_count() or 1))) as pool:
            errors = dict(zip(keys, pool.map(work, keys)))
        results: dict = {}
        for name in cases:
            results[name] = {}
            for key in keys:
                path = job_dir / f"{name}.{key[0]}.{key[1]}.safetensors"
                results[name][key] = errors.get(key) or (Measured.read(path) if path.exists() else f"{key}: no result")
        return results


# --------------------------------------------------------------------------- comparing

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
    def read(cls, path: Path) -> Measured:
        with safe_open(str(path), "np") as f:
            errors = json.loads((f.metadata() or {}).get("errors", "{}"))
        return cls(path.name.split(".")[1], load_file(str(path)), errors)

    def known_limit(self, check: str, precision: str) -> bool:
        limit = KNOWN_LIMITS.get((self.backend, precision))
        return check in self.errors and limit is not None and limit in self.errors[check]


@dataclass(frozen=True)
class Comparison:
    """One check of one backend pair: the worst tensor, its difference (scaled as
    MEASURES says) and what that means."""

    check: str
    precision: str
    pair: tuple[str, str]
    key: str  # the tensor with the largest scaled difference
    diff: float
    tolerance: float | None
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


def _scaled(check: str, precision: str, a: np.ndarray, b: np.ndarray, scale: float = 0.0) -> tuple[float, int]:
    """The largest difference of a and b, scaled as MEASURES says, and where it is.

    `scale` is the largest gradient of the tensor's layer, for the gradient check: a bias
    that batch norm follows has a true gradient of zero, so its float32 gradient is pure
    rounding noise, and only the layer's scale says whether that noise is small."""
    diff = np.abs(a - b)
    index = int(np.argmax(diff)) if diff.size else 0
    worst = float(diff.flat[index]) if diff.size else 0.0
    measure = MEASURES[precision][check]
    if measure.startswith("relative to max(1"):
        worst /= max(1.0, float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    elif measure.startswith("relative to the largest gradient"):
        worst = worst / scale if scale else worst
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
            comparisons.append(Comparison(check, precision, pair, "-", float("nan"), tolerance,
                                          "; ".join(f"{m.backend}: {m.errors[check]}" for m in failed), not_run=known))
            continue
        keys = sorted(k for k in a if k.startswith(prefix))
        missing = sorted(set(keys) ^ {k for k in b if k.startswith(prefix)})
        if missing or not keys:
            comparisons.append(Comparison(check, precision, pair, ", ".join(missing[:3]) or prefix, float("inf"), tolerance,
                                          f"tensors present in one backend's results only: {missing[:6]}"))
            continue
        worst_key, worst, worst_index = keys[0], -1.0, 0
        if any(a[key].shape != b[key].shape for key in keys):
            key = next(key for key in keys if a[key].shape != b[key].shape)
            comparisons.append(Comparison(check, precision, pair, key, float("inf"), tolerance,
                                          f"{key}: shape {a[key].shape} on {pair[0]}, {b[key].shape} on {pair[1]}"))
            continue
        scales_a, scales_b = _layer_scales(a, keys), _layer_scales(b, keys)
        for key in keys:
            diff, index = _scaled(check, precision, a[key], b[key], max(scales_a[key], scales_b[key]))
            if diff > worst:
                worst_key, worst, worst_index = key, diff, index
        comparisons.append(Comparison(check, precision, pair, worst_key, worst, tolerance,
                                      _side_by_side(check, prefix, worst_key, worst_index, a, b, pair)))
    return comparisons


def _side_by_side(check: str, prefix: str, key: str, index: int, a: dict, b: dict, pair: tuple[str, str]) -> str:
    x, y = a[key], b[key]
    where = np.unravel_index(index, x.shape) if x.ndim else ()
    lines = [f"{key}{list(map(int, where))}: {pair[0]} {x[where]!r}, {pair[1]} {y[where]!r}"]
    if check in ("1 iteration", "5 iterations"):
        for metric in ("loss_D", "loss_G"):
            lines.append(f"{metric} per step: {pair[0]} {a[prefix + metric].tolist()}; {pair[1]} {b[prefix + metric].tolist()}")
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


def trajectories(results: dict[tuple[str, str], Measured | str], precision: str = "float32") -> str:
    """loss_D and loss_G over the five iterations on every backend, and their largest spread."""
    lines = []
    for metric in ("loss_D", "loss_G"):
        curves = {backend: r.arrays[f"steps5.{metric}"] for (backend, p), r in results.items()
                  if p == precision and isinstance(r, Measured) and f"steps5.{metric}" in r.arrays}
        if not curves:
            continue
        lines.append(f"{metric} ({precision}), iterations 1..{ITERATIONS}:")
        lines += [f"  {backend:<17} " + " ".join(f"{v:.7f}" for v in curve) for backend, curve in curves.items()]
        spread = np.ptp(np.stack(list(curves.values())), axis=0)
        lines.append(f"  {'spread':<17} " + " ".join(f"{v:.1e}".rjust(9) for v in spread))
    return "\n".join(lines)


def format_table(comparisons: list[Comparison], title: str = "") -> str:
    rows = ["| pair | precision | check | max diff | tolerance | result | worst tensor |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        tolerance = "report" if c.tolerance is None else f"{c.tolerance:.0e}"
        worst = c.key if not c.not_run else c.detail
        rows.append(f"| {c.pair[0]} vs {c.pair[1]} | {c.precision} | {c.check} | {c.diff:.2e} | {tolerance} | {c.verdict} | {worst} |")
    return (f"{title}\n\n" if title else "") + "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a parity worker (started by common.parity.run)")
    parser.add_argument("--worker", nargs=3, metavar=("JOB_DIR", "BACKEND", "PRECISION"), required=True)
    args = parser.parse_args()
    _worker(Path(args.worker[0]), args.worker[1], args.worker[2])
