"""The shared config: presets, overrides from --set and TOML, and validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from common.config import Block, ConfigError, load_toml, parse_set
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec, reachable_image_sizes


def test_every_preset_validates_and_documents_its_source():
    for name, preset in PRESETS.items():
        config = make_config(name)
        assert config.preset == name
        assert preset.source and preset.differences, f"{name}: say where it comes from and how it differs"
        assert (config.data.image_size, config.data.channels) == (config.model.image_size, config.model.channels)


def test_preset_hyper_parameters_follow_their_sources():
    pokemon, svhn, mnist = make_config("pokemon64"), make_config("svhn32"), make_config("mnist28")
    assert (pokemon.model.bn_eps, pokemon.optim.lr_g, pokemon.optim.lr_d, pokemon.optim.batch_size) == (
        0.8,
        0.005,
        0.005,
        256,
    )
    assert (svhn.model.latent_dist, svhn.model.latent_dim, svhn.model.ngf) == ("uniform", 100, 32)
    assert (mnist.model.latent_dim, mnist.model.channels, mnist.model.image_size) == (300, 1, 28)
    assert [b.dropout for b in mnist.model.discriminator] == [0.25, 0.25, 0.0]
    dcgan = make_config("dcgan64")
    assert (dcgan.optim.beta1, dcgan.optim.beta2, dcgan.model.init_std, dcgan.model.leaky_slope) == (
        0.5,
        0.999,
        0.02,
        0.2,
    )


def test_set_overrides_change_the_model():
    config = make_config("dcgan64", parse_set(["model.ngf=32", "optim.lr_g=1e-3", "optim.d_steps=2"]))
    assert (config.model.ngf, config.optim.lr_g, config.optim.d_steps) == (32, 1e-3, 2)
    # G's convt1 is 100 -> 8·ngf channels, 4x4: 100·256·16 weights, then 256 BN pairs.
    g = generator_spec(config.model)
    assert g.layer("convt1").params == 100 * 256 * 16 and g.layer("bn1").params == 512


def test_set_values_are_parsed_as_toml_and_fall_back_to_strings():
    assert parse_set(["a.b=3", "a.c=0.5", "a.d=true", "a.e=hello", "a.f=[1, 2]"]) == {
        "a.b": 3,
        "a.c": 0.5,
        "a.d": True,
        "a.e": "hello",
        "a.f": [1, 2],
    }


def test_toml_file_overrides_equal_set_overrides(tmp_path):
    path = tmp_path / "over.toml"
    path.write_text('seed = 7\n[model]\nngf = 32\n[data]\ndataset = "mnist"\n')
    assert make_config("dcgan64", load_toml(path)) == make_config(
        "dcgan64", parse_set(["model.ngf=32", "data.dataset=mnist", "seed=7"])
    )


def test_a_resolved_config_round_trips_through_toml(tmp_path):
    config = make_config("mnist28", {"model.ndf": 32, "optim.real_label": 0.9})
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert make_config("mnist28", load_toml(path)) == config


def test_the_layer_plan_can_be_replaced_from_toml(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(
        "[[model.discriminator]]\nlayer = 'conv'\nwidth = 1\nactivation = 'leaky_relu'\n"
        "[[model.discriminator]]\nlayer = 'linear'\nwidth = 0\nbias = true\n"
    )
    config = make_config("svhn32", load_toml(path))
    d = discriminator_spec(config.model)
    assert [layer.name for layer in d.layers] == ["conv1", "act1", "flatten2", "fc2"]
    assert d.params == 3 * 32 * 16 + (32 * 16 * 16 + 1)


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        ({"model.image_size": -64}, "model.image_size", -64),
        ({"model.image_size": 48}, "model.image_size", 48),
        ({"model.latent_dim": 0}, "model.latent_dim", 0),
        ({"model.ngf": 2.5}, "model.ngf", 2.5),
        ({"model.nfg": 32}, "model.nfg", 32),
        ({"modle.ngf": 32}, "modle.ngf", 32),
        ({"model.latent_dist": "cauchy"}, "model.latent_dist", "cauchy"),
        ({"model.init": "he"}, "model.init", "he"),
        ({"optim.beta1": 1.0}, "optim.beta1", 1.0),
        ({"optim.lr_d": -1e-4}, "optim.lr_d", -1e-4),
        ({"optim.d_steps": 0}, "optim.d_steps", 0),
        ({"optim.real_label": 0.3}, "optim.real_label", 0.3),
        ({"model.bn_momentum": 1.5}, "model.bn_momentum", 1.5),
        ({"data.image_size": 32}, "data.image_size", 32),
        ({"data.value_range": [0.0, 1.0]}, "data.value_range", (0.0, 1.0)),
        ({"seed": "x"}, "seed", "x"),
    ],
)
def test_bad_values_raise_one_error_naming_key_and_value(overrides, key, value):
    with pytest.raises(ConfigError) as err:
        make_config("dcgan64", overrides)
    assert err.value.key == key and err.value.value == value
    assert key in str(err.value) and repr(value) in str(err.value)


def test_bad_plan_blocks_are_named_by_position():
    with pytest.raises(ConfigError, match=r"model.generator\[1\].activation='swish'"):
        make_config(
            "dcgan64",
            {
                "model.generator": [
                    {"layer": "conv_transpose", "width": 8, "stride": 1, "padding": 0},
                    {"layer": "conv_transpose", "width": 0, "activation": "swish"},
                ]
            },
        )
    with pytest.raises(ConfigError, match=r"model.discriminator\[0\].kernal"):
        make_config("dcgan64", {"model.discriminator": [{"layer": "conv", "width": 0, "kernal": 3}]})
    with pytest.raises(ConfigError, match=r"model.generator\[0\].width=8: 0 on the last block"):
        make_config("dcgan64", {"model.generator": [{"layer": "conv_transpose", "width": 8}]})


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="preset='dcgan128'.*dcgan64, pokemon64, svhn32, mnist28"):
        make_config("dcgan128")


def test_unreachable_image_size_says_which_sizes_the_plan_reaches():
    with pytest.raises(ConfigError, match="image sizes this layer plan reaches: 64$"):
        make_config("dcgan64", {"model.image_size": 128})
    with pytest.raises(ConfigError, match=r"model.image_size=30.*reaches: 4, 8, 12"):
        make_config("mnist28", {"model.image_size": 30})


def test_reachable_sizes_follow_the_layer_arithmetic():
    assert reachable_image_sizes(make_config("dcgan64").model) == [64]
    # Three stride-2 transposed convolutions from any k x k start: multiples of 8.
    assert reachable_image_sizes(make_config("svhn32").model, largest=64) == [8, 16, 24, 32, 40, 48, 56, 64]


def test_configs_are_frozen():
    config = make_config("dcgan64")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.ngf = 32  # type: ignore[misc]
    assert isinstance(config.model.generator[0], Block)
