"""What each build is, read off the built models, beside the numeric checks: `dcgan describe`'s
figures (layers, output shapes, parameter counts), statistics of every initial parameter, and
how each dropout layer treats its input, for every preset on every backend. The tests of
tests/parity (test_shapes, test_param_counts, test_init) hold these to the spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.backends import BACKENDS, load_backend
from common.describe import describe_model
from common.parity.workers import Job, Key, run_workers
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec


def init_statistics(parameters: dict[str, dict[str, np.ndarray]]) -> dict:
    return {
        layer: {
            name: {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "max_abs": float(np.abs(a).max())}
            for name, a in params.items()
        }
        for layer, params in parameters.items()
    }


def dropout_behaviour(backend, discriminator, spec) -> dict:
    """How each dropout layer treats its input, read off run_layers: in train mode every output
    is 0 or input / (1 - rate); in eval mode it is the input."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (64, *spec.in_shape)).astype(np.float32)
    found = {}
    for training in (True, False):
        outputs = [(name, y) for name, _, y in backend.run_layers(discriminator, x, training=training)]
        for i, (name, y) in enumerate(outputs):
            if name.startswith("drop"):
                before = outputs[i - 1][1]
                live = before != 0
                ratio = y[live] / before[live]
                key = "train" if training else "eval"
                found.setdefault(name, {})[key] = {
                    "zero_fraction": float(np.mean(ratio == 0)),
                    "kept_scale_min": float(ratio[ratio != 0].min()),
                    "kept_scale_max": float(ratio[ratio != 0].max()),
                }
    return found


def work(job: Job) -> None:
    """A worker's part: every preset of the job built on its backend, described as JSON."""
    backend = load_backend(job.backend, job.precision)
    report = {}
    for preset in job.spec["presets"]:
        config = make_config(preset)
        networks = dict(zip(("generator", "discriminator"), backend.build(config)))
        specs = {"generator": generator_spec(config.model), "discriminator": discriminator_spec(config.model)}
        report[preset] = {
            role: {
                "describe": describe_model(backend, networks[role], specs[role], config),
                "init": init_statistics(backend.parameters(networks[role])),
            }
            for role in specs
        }
        report[preset]["dropout"] = dropout_behaviour(backend, networks["discriminator"], specs["discriminator"])
    (job.out / "report.json").write_text(json.dumps(report))


def describe_builds(
    backends=tuple(BACKENDS),
    presets=tuple(PRESETS),
    parallel: int | None = None,
    timeout: float | None = None,
    log=print,
) -> dict[str, dict | str]:
    """Every preset built on every backend in float32, as training builds them, one process per
    backend, `parallel` at a time. Returns {backend: {preset: {"generator": {"describe", "init"},
    "discriminator": ..., "dropout"}}, or the worker's error message}."""

    def read(out: Path, key: Key) -> dict:
        return json.loads((out / "report.json").read_text())

    keys = [(backend, "float32") for backend in backends]
    found = run_workers(
        "structure", {"presets": list(presets)}, keys, read, parallel=parallel, timeout=timeout, log=log
    )
    return {backend: report for (backend, _), report in found.items()}
