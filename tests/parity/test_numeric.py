"""Numeric parity (common/parity/): the same canonical weights and inputs through all five
backends, every pair held to the tolerances of common.parity.TOLERANCES: in float64 for every
preset (dcgan64 and pokemon64 at a quarter of their width, OVERRIDES), and in float32 for
mnist28 and dcgan64 (FLOAT32_PRESETS).

float64 is the proof that the builds compute the same function: two correct implementations
agree to ~1e-14 there, so any structural difference shows. float32 adds that their rounding
stays within tolerance, which depends on the kinds of layer a model holds; mnist28 (dense,
1-d BN, dropout, fresh noise, and here G's moving average) and dcgan64 (convolutions only, the fakes reused) hold every
kind of layer the four presets use, and the float32 workers of the other two would add a
sixth of the suite's time. `dcgan parity` (docs/parity.md) runs both precisions on all four.

One worker process per (backend, precision) measures every preset (Keras fixes its backend
per process, JAX and Keras take float64 process-wide); the tests compare the results pair by
pair. A failure names the preset, the pair, the precision, the check and the worst tensor,
with the two values side by side (and the losses per step for the training checks).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from common import parity
from common.backends import BACKENDS, PRECISIONS
from common.presets import PRESETS, make_config

PAIRS = list(itertools.combinations(BACKENDS, 2))
# mnist28 keeps G's moving average (optim.ema, common/algorithm.py), so the training checks
# compare it too: random_state gives it values apart from G's, and each backend's state after
# 1 and 5 iterations holds it under ema_generator.*.
#
# dcgan64 and pokemon64 run at a quarter of their width (ngf = ndf = 16 instead of 64): the same
# layers, kernels, strides, paddings, batch norms and activations, so every path is compared as
# at full width and float64 still agrees to ~1e-14, for half of these workers' CPU time (their
# convolutions cost 16x less; 190 s against 91 s of CPU for dcgan64's five float64 workers).
# `dcgan parity` and the committed report (docs/parity-report.md) compare the full widths.
QUARTER_WIDTH = {"model.ngf": 16, "model.ndf": 16}
OVERRIDES = {"mnist28": {"optim.ema": 0.999}, "dcgan64": QUARTER_WIDTH, "pokemon64": QUARTER_WIDTH}
FLOAT32_PRESETS = ("mnist28", "dcgan64")
PRESETS_OF = {"float64": tuple(PRESETS), "float32": FLOAT32_PRESETS}
assert set(PRESETS_OF) == set(PRECISIONS)
# (preset, precision, check) of every judged check; float32's training checks are reported, not judged
JUDGED = [
    (preset, precision, check)
    for precision in PRECISIONS
    for check, tol in parity.TOLERANCES[precision].items()
    if tol.limit is not None
    for preset in PRESETS_OF[precision]
]


@pytest.fixture(scope="session")
def compared() -> dict[str, list[parity.Compared]]:
    """Each precision's presets measured and compared, one worker per (backend, precision);
    of the arrays only the metrics of each iteration are kept (the float64 states of dcgan64
    and pokemon64 alone are ~150 MB a backend). {precision: {preset: Compared}}"""
    found = {}
    for precision, presets in PRESETS_OF.items():
        configs = {preset: make_config(preset, OVERRIDES.get(preset, {})) for preset in presets}
        cases = {preset: (config, parity.random_state(config)) for preset, config in configs.items()}
        found[precision] = parity.run_compared(cases, precisions=(precision,), log=lambda *_: None)
    return found


@pytest.fixture(scope="session")
def measured(compared) -> dict:
    """{preset: {(backend, precision): Measured (its metrics and errors), or the worker's error}}"""
    found = {}
    for by_preset in compared.values():
        for preset, results in by_preset.items():
            found.setdefault(preset, {}).update(results.results)
    return found


@pytest.fixture(scope="session")
def comparisons(compared) -> dict:
    found = {}
    for by_preset in compared.values():
        for preset, results in by_preset.items():
            for c in results.comparisons:
                found[(preset, c.precision, c.pair, c.check)] = c
    return found


@pytest.mark.parametrize("pair", PAIRS, ids="-vs-".join)
@pytest.mark.parametrize(("preset", "precision", "check"), JUDGED, ids=["-".join(case) for case in JUDGED])
def test_backends_agree(measured, comparisons, preset, precision, check, pair):
    failed = [
        f"{b} ({precision}): {measured[preset][(b, precision)]}"
        for b in pair
        if isinstance(measured[preset][(b, precision)], str)
    ]
    assert not failed, "\n".join(failed)
    c = comparisons[(preset, precision, pair, check)]
    assert c.passed, (
        f"{preset} / {pair[0]} vs {pair[1]} / {precision} / {check}: max diff {c.diff:.3e} "
        f"({parity.TOLERANCES[precision][check].scale}) > {c.tolerance:.0e} at {c.key}\n{c.detail}"
    )


@pytest.mark.parametrize("preset", FLOAT32_PRESETS)
def test_float32_trajectories_are_reported_for_every_backend(measured, preset):
    report = parity.trajectories(measured[preset], "float32")
    for backend in BACKENDS:
        assert backend in report, f"{preset}: no float32 loss curve for {backend}\n{report}"
    curves = [m.arrays["steps5.loss_G"] for (b, p), m in measured[preset].items() if p == "float32"]
    assert all(len(c) == parity.ITERATIONS and np.isfinite(c).all() for c in curves)


# The first iteration's losses in float32 agree across backends to 2.3e-5 at worst (dcgan64's
# loss_G, docs/parity.md): loss_D is computed before any update, and loss_G after one Adam step
# of D, whose first step moves each weight by about lr * sign(gradient), so a gradient whose
# sign follows summation order moves its weight by 2 * lr. 1e-3 leaves room for that, ~40x the
# worst measured, and is far below what a wrong algorithm gives (a label-smoothing target, a
# BN statistic or a reused fake changes a loss by 1e-2 or more). Later iterations are reported
# only: those differences grow with every step.
FIRST_ITERATION_TOLERANCE = 1e-3


@pytest.mark.parametrize("preset", FLOAT32_PRESETS)
def test_float32_first_iteration_losses_agree(measured, preset):
    for metric in ("loss_D", "loss_G"):
        first = {b: float(m.arrays[f"steps5.{metric}"][0]) for (b, p), m in measured[preset].items() if p == "float32"}
        assert set(first) == set(BACKENDS)
        spread = max(first.values()) - min(first.values())
        assert spread <= FIRST_ITERATION_TOLERANCE, f"{preset} float32 {metric} at iteration 1: {first}"


def _measured(backend: str, arrays: dict) -> parity.Measured:
    return parity.Measured(backend, arrays, {})


def test_compare_finds_a_difference_of_one_part_in_1e8():
    """The float64 tolerance is tight enough to see a changed constant, e.g. TensorFlow's
    float32 leaky-ReLU slope (0.2000000030) in a float64 model."""
    rng = np.random.default_rng(0)
    a = {"grad.discriminator.conv1.weight": rng.normal(size=(4, 3, 2, 2))}
    b = {"grad.discriminator.conv1.weight": a["grad.discriminator.conv1.weight"] * (1 + 1.5e-8)}
    (c,) = [c for c in parity.compare(_measured("torch", a), _measured("jax", b), "float64") if c.check == "gradients"]
    assert c.passed is False and c.key == "grad.discriminator.conv1.weight"
    assert "torch" in c.detail and "jax" in c.detail


def test_float32_gradients_are_scaled_by_their_layer():
    """A bias that BN follows has a zero true gradient: its float32 value is noise, judged
    against the layer's weight gradient, not against itself."""
    a = {"grad.generator.fc1.weight": np.array([[1.0, -2.0]]), "grad.generator.fc1.bias": np.array([3e-8])}
    b = {"grad.generator.fc1.weight": np.array([[1.0, -2.0]]), "grad.generator.fc1.bias": np.array([-5e-8])}
    (c,) = [c for c in parity.compare(_measured("torch", a), _measured("jax", b), "float32") if c.check == "gradients"]
    assert c.passed and math.isclose(c.diff, 8e-8 / 2.0)


def test_float32_forward_is_scaled_by_the_tensor_but_never_below_one():
    """A float32 layer output is judged relative to its largest value, whose rounding grows
    with it; below 1 its difference stays absolute, so a small tensor gains no slack."""

    def forward(backend: str, values: list[float]) -> parity.Measured:
        return _measured(backend, {"forward.train.generator.fc1": np.array([values])})

    (c,) = [
        c
        for c in parity.compare(forward("torch", [100.0, 0.5]), forward("jax", [100.0002, 0.5]), "float32")
        if c.check == "forward (train)"
    ]
    assert c.passed and math.isclose(c.diff, 2e-4 / 100.0002, rel_tol=1e-6)
    (c,) = [
        c
        for c in parity.compare(forward("torch", [0.1, 0.5]), forward("jax", [0.1, 0.50002]), "float32")
        if c.check == "forward (train)"
    ]
    assert c.passed is False and math.isclose(c.diff, 2e-5, rel_tol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    ("backend", "error"),
    [
        ("jax", "RuntimeError: something new"),
        # what Keras's own Conv2D raised on torch in float64 (keras_impl/layers.py's Conv2D): no error is excused
        ("keras-torch", "RuntimeError: slow_conv2d: grad_weight must be contiguous"),
    ],
    ids=["new-error", "slow_conv2d"],
)
def test_a_check_that_raised_fails(precision, backend, error):
    """Whatever the error, backend or precision, and whether the check is judged or only
    reported (float32's iterations): a check a backend could not compute is a failure, shown
    with its error in the table."""
    ok = _measured("torch", {"grad.generator.fc1.weight": np.zeros(2), "steps5.loss_D": np.ones(5)})
    raised = parity.Measured(backend, {}, {"gradients": error, "5 iterations": error})
    found = {c.check: c for c in parity.compare(ok, raised, precision)}
    for check in ("gradients", "5 iterations"):
        c = found[check]
        assert c.passed is False and c.verdict == "FAIL", c
        assert error in c.key and error in c.detail
        assert f"| FAIL | {backend}: {error} |" in parity.format_table([c])


def test_a_failed_worker_fails_every_check_against_every_other_backend():
    """A worker that did not finish is no gap in the table: each of its pairs fails every
    check with the worker's message, and the other pairs are compared as usual."""
    arrays = {"grad.generator.fc1.weight": np.ones(2)}
    results = {
        ("torch", "float64"): _measured("torch", arrays),
        ("jax", "float64"): _measured("jax", arrays),
        ("keras-torch", "float64"): "keras-torch (float64) worker exited 1:\nTraceback (most recent call last): ...",
    }
    comparisons = parity.compare_all(results, ["float64"])
    assert len(comparisons) == 3 * len(parity.CHECKS)
    with_worker = [c for c in comparisons if "keras-torch" in c.pair]
    assert len(with_worker) == 2 * len(parity.CHECKS)
    for c in with_worker:
        assert c.verdict == "FAIL" and c.key == "keras-torch: keras-torch (float64) worker exited 1:", c
    (gradients,) = [c for c in comparisons if c.pair == ("torch", "jax") and c.check == "gradients"]
    assert gradients.passed and gradients.diff == 0.0


@pytest.mark.parametrize("both", [False, True], ids=["one-backend", "both-backends"])
def test_a_nan_fails(both):
    """A NaN is never agreement: not in a check that is only reported, not where both backends
    hold it, and not after a tensor with a finite difference (loss_D's, compared first)."""
    a = {"steps5.loss_D": np.ones(2), "steps5.loss_G": np.array([0.5, np.nan])}
    b = {"steps5.loss_D": np.zeros(2), "steps5.loss_G": np.array([0.5, np.nan if both else 0.25])}
    (c,) = [
        c for c in parity.compare(_measured("torch", a), _measured("jax", b), "float32") if c.check == "5 iterations"
    ]
    assert c.passed is False and np.isnan(c.diff) and c.key == "steps5.loss_G"


def test_results_read_from_their_files_compare_as_in_memory(tmp_path):
    """Workers write float32 results as float32 (common.parity.measurement._stored); read back,
    lazily (Measured.open, as run_compared reads them) or at once (Measured.read), they are the
    float64 arrays they were computed as, and every pair compares as from memory."""
    from safetensors.numpy import save_file

    from common.parity.measurement import _stored

    rng = np.random.default_rng(1)
    base = {
        "forward.train.generator.fc1": rng.normal(size=(4, 8)).astype(np.float32),
        "grad.generator.fc1.weight": rng.normal(size=(8, 3)).astype(np.float32),
        "grad.generator.fc1.bias": rng.normal(size=(8,)).astype(np.float32) * 1e-6,
        "update.generator.fc1.weight": rng.normal(size=(8, 3)).astype(np.float32) * 1e-4,
        "step1.g_optimizer.step": np.array([1], dtype=np.int64),
        "step1.loss_D": np.array([1.25]),
        "step1.loss_G": np.array([0.5]),
        "steps5.loss_D": np.array([1.25, 1.0, 0.75, 0.5, 0.25]),
        "steps5.loss_G": np.array([0.5, 0.75, 1.0, 1.25, 1.5]),
    }
    results, in_memory = {}, {}
    for n, backend in enumerate(("torch", "jax", "keras-jax")):
        arrays = {
            k: (v + np.float32(n * 1e-6) * np.ones_like(v) if v.dtype == np.float32 else v) for k, v in base.items()
        }
        errors = {"5 iterations": "RuntimeError: not this one"} if backend == "jax" else {}
        path = tmp_path / f"{backend}.safetensors"
        save_file({k: _stored(v) for k, v in arrays.items()}, str(path), metadata={"errors": json.dumps(errors)})
        in_memory[(backend, "float32")] = parity.Measured(
            backend, {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}, errors
        )
        results[(backend, "float32")] = path
    expected = parity.compare_all(in_memory, ["float32"])
    for read in (parity.Measured.open, parity.Measured.read):
        found = {key: read(path, key[0]) for key, path in results.items()}
        assert found[("torch", "float32")].arrays["grad.generator.fc1.weight"].dtype == np.float64
        assert repr(parity.compare_all(found, ["float32"])) == repr(expected)  # repr: nan (not run) equals nan
    assert len(expected) == 3 * len(parity.CHECKS)
