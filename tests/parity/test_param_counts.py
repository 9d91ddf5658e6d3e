"""Parameter counts read off every build equal the spec's, layer by layer, and the totals
equal the figures counted by hand from the published write-ups (README, Presets)."""

from __future__ import annotations

import pytest

from common.presets import make_config
from common.spec import discriminator_spec, generator_spec

# Counted by hand from the sources, not from the spec: (generator, discriminator).
EXPECTED_TOTALS = {
    "dcgan64": (3_576_704, 2_765_568),
    "pokemon64": (3_576_704, 2_765_696),
    "svhn32": (372_416, 167_809),
    "mnist28": (4_752_705, 138_561),
}


@pytest.mark.parametrize("role", ("generator", "discriminator"))
def test_each_layer_parameter_count_matches_the_spec(report, preset, backend, role):
    model = make_config(preset).model
    spec = generator_spec(model) if role == "generator" else discriminator_spec(model)
    built = {layer["name"]: layer["params"] for layer in report[role]["describe"]["layers"]}
    mismatches = [
        f"{layer.name}: built {built.get(layer.name)}, spec {layer.params}"
        for layer in spec.layers
        if built.get(layer.name) != layer.params
    ]
    assert not mismatches, f"{preset} / {backend} / {role}: " + "; ".join(mismatches)


def test_totals_match_the_sources(report, preset, backend):
    built = (report["generator"]["describe"]["params"], report["discriminator"]["describe"]["params"])
    assert built == EXPECTED_TOTALS[preset], (
        f"{preset} / {backend}: (G, D) totals {built}, expected {EXPECTED_TOTALS[preset]}"
    )


def test_spec_totals_match_the_sources(preset):
    model = make_config(preset).model
    assert (generator_spec(model).params, discriminator_spec(model).params) == EXPECTED_TOTALS[preset]
