"""The shared config: presets, overrides from --set and TOML, and validation errors."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from common.config import INT_MAX, SECTIONS, SEED_MAX, Block, Config, ConfigError, load_toml, parse_set, validate
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


def _plan_override(name: str, value) -> dict:
    """dcgan64's generator plan with `name` of its first block set to `value`."""
    plan = [dataclasses.asdict(block) for block in make_config("dcgan64").model.generator]
    plan[0][name] = value
    return {"model.generator": plan}


def _keys_of(kind) -> list[tuple[str, dict]]:
    """Every config key whose field is annotated `kind` (float or int): (dotted key, the
    overrides that set it to a value `set`), sections, top level and the first plan block."""
    keys = [
        (f"{section}.{name}", lambda v, k=f"{section}.{name}": {k: v})
        for section, cls in SECTIONS.items()
        for name, annotation in typing.get_type_hints(cls).items()
        if annotation is kind
    ]
    keys += [(name, lambda v, k=name: {k: v}) for name, a in typing.get_type_hints(Config).items() if a is kind]
    keys += [
        (f"model.generator[0].{name}", lambda v, n=name: _plan_override(n, v))
        for name, annotation in typing.get_type_hints(Block).items()
        if annotation is kind
    ]
    return keys


@pytest.mark.parametrize("key, overrides", _keys_of(float), ids=[k for k, _ in _keys_of(float)])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_every_float_key_refuses_a_value_that_is_not_finite(key, overrides, value):
    with pytest.raises(ConfigError) as err:
        make_config("dcgan64", overrides(value))
    assert err.value.key == key and f"{key}={value!r}" in str(err.value)


@pytest.mark.parametrize("key, overrides", _keys_of(int), ids=[k for k, _ in _keys_of(int)])
def test_every_integer_key_refuses_a_value_past_its_range(key, overrides):
    """Past int64 (as a TOML file or --set gives it) and just past int32: refused by name
    here, not deep inside numpy or a framework."""
    for value in (2**64 + 1, INT_MAX + 1):
        with pytest.raises(ConfigError) as err:
            make_config("dcgan64", overrides(value))
        assert err.value.key == key and err.value.value == value


def test_seeds_are_refused_past_the_largest_every_backend_takes():
    assert make_config("dcgan64", {"seed": SEED_MAX}).seed == SEED_MAX
    with pytest.raises(ConfigError, match=rf"seed={SEED_MAX + 1}: a non-negative integer up to {SEED_MAX}"):
        make_config("dcgan64", {"seed": SEED_MAX + 1})


def test_the_largest_seed_builds_on_keras_on_torch(dcgan):
    """Keras on torch holds seeds as int32 and seeds layers with 1000 x 2 x seed: SEED_MAX is
    the bound that keeps them there (one past 1,073,741 fails inside torch)."""
    tiny = ["--preset", "mnist28", "--set", "model.ngf=4", "--set", "model.ndf=4"]
    done = dcgan("describe", "--backend", "keras-torch", *tiny, "--set", f"seed={SEED_MAX}", check=False)
    assert done.returncode == 0 and "total" in done.stdout, done.stderr[-2000:]


def test_a_field_of_the_wrong_type_is_refused_whatever_its_own_checks():
    """Every field is held to its annotation, also those validate checks nothing else of
    (a block's bias, made in Python rather than read from TOML)."""
    config = make_config("dcgan64")
    plan = (dataclasses.replace(config.model.generator[0], bias="yes"), *config.model.generator[1:])
    with pytest.raises(ConfigError, match=r"model.generator\[0\].bias='yes': true or false"):
        validate(dataclasses.replace(config, model=dataclasses.replace(config.model, generator=plan)))
