"""The architecture spec: layer names, analytic shapes and parameter counts, no framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from common.config import ACTIVATIONS
from common.presets import make_config
from common.quality.network import ENTRIES, FEATURE_LAYER, SPEC
from common.spec import Activation, Conv, ConvTranspose, Init, Linear, MaxPool, discriminator_spec, generator_spec

ROOT = Path(__file__).resolve().parents[1]


def test_dcgan64_shapes_are_the_tutorials():
    model = make_config("dcgan64").model
    g = generator_spec(model)
    assert [(layer.name, layer.out_shape) for layer in g.layers if layer.kind == "conv_transpose"] == [
        ("convt1", (512, 4, 4)),
        ("convt2", (256, 8, 8)),
        ("convt3", (128, 16, 16)),
        ("convt4", (64, 32, 32)),
        ("convt5", (3, 64, 64)),
    ]
    d = discriminator_spec(model)
    assert [(layer.name, layer.out_shape) for layer in d.layers if layer.kind == "conv"] == [
        ("conv1", (64, 32, 32)),
        ("conv2", (128, 16, 16)),
        ("conv3", (256, 8, 8)),
        ("conv4", (512, 4, 4)),
        ("conv5", (1, 1, 1)),
    ]
    assert d.out_shape == (1,) and "bn1" not in [layer.name for layer in d.layers]  # no BN on D's first layer


def test_layer_names_follow_their_blocks():
    g = generator_spec(make_config("mnist28").model)
    assert [layer.name for layer in g.layers][:5] == ["fc1", "bn1", "act1", "reshape1", "convt2"]
    d = discriminator_spec(make_config("mnist28").model)
    assert [layer.name for layer in d.layers] == ["conv1", "act1", "drop1", "conv2", "act2", "drop2", "flatten3", "fc3"]


def test_mnist28_batch_norm_after_the_projection_is_over_features():
    g = generator_spec(make_config("mnist28").model)
    assert g.layer("bn1").in_shape == (7 * 7 * 256,) and g.layer("bn1").params == 2 * 7 * 7 * 256


def test_layer_arithmetic_matches_pytorchs_formulas():
    conv = Conv("c", (3, 28, 28), 8, kernel=4, stride=2, padding=1, bias=True)
    assert conv.out_shape == (8, 14, 14) and conv.params == 3 * 8 * 16 + 8
    convt = ConvTranspose("t", (256, 7, 7), 128, kernel=5, stride=1, padding=2, bias=True)
    assert convt.out_shape == (128, 7, 7) and convt.in_size(7) == 7
    assert ConvTranspose("t", (1, 1, 1), 1, 4, 2, 1, False).in_size(33) is None
    assert Linear("l", (6272,), 1, bias=True).params == 6273


def test_glorot_std_uses_both_fans():
    layer = Conv("c", (64, 14, 14), 128, kernel=4, stride=2, padding=1, bias=True)
    assert abs(Init("glorot_uniform", 0.02).weight_std(layer) - (6 / ((64 + 128) * 16)) ** 0.5 / 3**0.5) < 1e-15
    assert Init("normal", 0.02).weight_std(layer) == 0.02


def test_max_pool_drops_a_partial_window_as_pytorch_does():
    assert MaxPool("p", (128, 7, 7), kernel=2, stride=2).out_shape == (128, 3, 3)
    assert MaxPool("p", (32, 28, 28), kernel=3, stride=1).out_shape == (32, 26, 26)
    assert MaxPool("p", (32, 28, 28), kernel=2, stride=2).params == 0


def test_the_feature_network_is_described_in_the_spec_language():
    """Its shapes and parameter count, the latter counted by hand from the layers: three
    bias-free 3x3 convolutions with BN, then 1152 -> 128 -> 10 dense layers."""
    assert [(layer.name, layer.out_shape) for layer in SPEC.layers if layer.kind in ("max_pool", "linear")] == [
        ("pool1", (32, 14, 14)),
        ("pool2", (64, 7, 7)),
        ("pool3", (128, 3, 3)),
        ("fc4", (128,)),
        ("fc5", (10,)),
    ]
    by_hand = (9 * 32 + 64) + (9 * 32 * 64 + 128) + (9 * 64 * 128 + 256) + (1152 * 128 + 128) + (128 * 10 + 10)
    assert SPEC.params == by_hand and SPEC.layer(FEATURE_LAYER).out_shape == (128,)
    assert ENTRIES[0].key == "features.conv1.weight" and ENTRIES[-1].key == "features.fc5.bias"


def test_pytorchs_default_init_bounds_are_one_over_root_fan_in():
    init = Init("kaiming_uniform", 0.0)
    conv = Conv("c", (32, 14, 14), 64, kernel=3, stride=1, padding=1, bias=True)
    assert init.weight_limit(conv) == init.bias_limit(conv) == 1 / (32 * 9) ** 0.5
    assert Init("normal", 0.02).bias_limit(conv) == 0.0
    with pytest.raises(ValueError, match="he_normal"):
        Init("he_normal", 0.02)


def _dict_keys(path: Path, name: str) -> set[str]:
    """The string keys of the module-level dict `name` in the file at `path`."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return {key.value for key in node.value.keys}
    raise AssertionError(f"{path} defines no {name}")


@pytest.mark.parametrize("package", ["pytorch_impl", "jax_impl", "keras_impl"])
def test_every_build_maps_every_activation_and_no_other(package):
    """One table names the activations (common.config.ACTIVATIONS); each build looks them up
    in a dict of its own, so an unknown name fails instead of becoming another function."""
    assert _dict_keys(ROOT / package / "models.py", "ACTIVATIONS") == set(ACTIVATIONS)
    with pytest.raises(ValueError, match="swish.*relu, leaky_relu, tanh"):
        Activation("act1", (4,), "swish")


def test_the_config_knows_nothing_of_the_spec():
    """The spec reads the config; the config imports nothing of the spec (no cycle)."""
    tree = ast.parse((ROOT / "common" / "config.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "common.spec" not in imported and "common" not in imported
