"""The architecture spec: layer names, analytic shapes and parameter counts, no framework."""

from __future__ import annotations

from common.presets import make_config
from common.spec import Conv, ConvTranspose, Init, Linear, discriminator_spec, generator_spec


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
