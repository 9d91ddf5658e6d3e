"""Runs in its own process for one backend (Keras fixes its backend per process).

Builds every preset with that backend and writes, as JSON, what the parity tests check:
`dcgan describe`'s figures read off the built models, and statistics of every initial
parameter. Usage: python -m tests.parity._worker BACKEND OUT.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

from common.backends import load_backend
from common.describe import describe_model
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
                    "kept_scale_min": float(ratio[ratio != 0].min()), "kept_scale_max": float(ratio[ratio != 0].max()),
                }
    return found


def main(backend_name: str, out_path: str) -> None:
    backend = load_backend(backend_name)
    report = {}
    for preset in PRESETS:
        config = make_config(preset)
        networks = dict(zip(("generator", "discriminator"), backend.build(config)))
        specs = {"generator": generator_spec(config.model), "discriminator": discriminator_spec(config.model)}
        report[preset] = {
            role: {
                "describe": describe_model(backend, networks[role], specs[role]),
                "init": init_statistics(backend.parameters(networks[role])),
            }
            for role in specs
        }
        report[preset]["dropout"] = dropout_behaviour(backend, networks["discriminator"], specs["discriminator"])
    with open(out_path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
