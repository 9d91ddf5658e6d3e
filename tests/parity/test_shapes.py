"""Every build has the spec's layers, in the spec's order, with the spec's output shapes."""

from __future__ import annotations

import pytest

from common.presets import make_config
from common.spec import discriminator_spec, generator_spec

ROLES = ("generator", "discriminator")


def _spec(preset: str, role: str):
    model = make_config(preset).model
    return generator_spec(model) if role == "generator" else discriminator_spec(model)


@pytest.mark.parametrize("role", ROLES)
def test_layers_are_the_specs_in_order(report, preset, backend, role):
    built = [layer for layer in report[role]["describe"]["layers"] if layer["kind"] != "helper"]
    spec = _spec(preset, role)
    assert [layer["name"] for layer in built] == [layer.name for layer in spec.layers], (
        f"{preset} / {backend} / {role}: built layers differ from the spec's"
    )


@pytest.mark.parametrize("role", ROLES)
def test_helper_layers_hold_no_parameters(report, preset, backend, role):
    for layer in report[role]["describe"]["layers"]:
        if layer["kind"] == "helper":
            assert layer["params"] == 0, f"{preset} / {backend} / {role} / {layer['name']}: helper with parameters"


@pytest.mark.parametrize("role", ROLES)
def test_each_layer_output_shape_matches_the_spec(report, preset, backend, role):
    built = {layer["name"]: layer for layer in report[role]["describe"]["layers"]}
    mismatches = [
        f"{layer.name}: built {tuple(built[layer.name]['output_shape'])}, spec {layer.out_shape}"
        for layer in _spec(preset, role).layers
        if layer.name in built and tuple(built[layer.name]["output_shape"]) != layer.out_shape
    ]
    assert not mismatches, f"{preset} / {backend} / {role}: " + "; ".join(mismatches)
