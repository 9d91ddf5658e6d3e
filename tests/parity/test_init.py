"""Initial parameters follow the config's scheme in every build.

"normal" (DCGAN): weights N(0, init_std), BN scale N(1, init_std); "glorot_uniform": weights
U(±sqrt(6/(fan_in+fan_out))), BN scale 1; biases and BN offsets 0 in both. Sample mean and
standard deviation must lie within 6 standard errors of the target, which a wrong scheme
or scale (e.g. a framework default left in place) misses by far.
"""

from __future__ import annotations

import math

import pytest

from common.presets import make_config
from common.spec import discriminator_spec, generator_spec

SIGMAS = 6.0


@pytest.mark.parametrize("role", ("generator", "discriminator"))
def test_initial_parameters_follow_the_config(report, preset, backend, role):
    model = make_config(preset).model
    spec = generator_spec(model) if role == "generator" else discriminator_spec(model)
    stats = report[role]["init"]
    problems = []
    for layer in spec.layers:
        if layer.params == 0:
            continue
        weight, bias = stats[layer.name]["weight"], stats[layer.name].get("bias")
        if layer.kind == "batch_norm":
            target_mean, target_std = 1.0, spec.init.bn_scale_std
        else:
            target_mean, target_std = 0.0, spec.init.weight_std(layer)
        n = weight["n"]
        if target_std == 0.0:
            if weight["std"] != 0.0 or weight["mean"] != target_mean:
                problems.append(
                    f"{layer.name}.weight: mean {weight['mean']:.4g} std {weight['std']:.3g}, "
                    f"want exactly {target_mean}"
                )
        else:
            if abs(weight["mean"] - target_mean) > SIGMAS * target_std / math.sqrt(n):
                problems.append(
                    f"{layer.name}.weight: mean {weight['mean']:.4g}, "
                    f"want {target_mean} ± {SIGMAS * target_std / math.sqrt(n):.2g} (n={n})"
                )
            if abs(weight["std"] / target_std - 1) > SIGMAS / math.sqrt(2 * n):
                problems.append(
                    f"{layer.name}.weight: std {weight['std']:.4g}, "
                    f"want {target_std:.4g} ± {SIGMAS / math.sqrt(2 * n):.1%} (n={n})"
                )
        if spec.init.scheme == "glorot_uniform" and layer.kind != "batch_norm":
            limit = math.sqrt(3) * target_std  # a uniform's bound: values beyond it mean a normal draw
            if weight["max_abs"] > limit * (1 + 1e-6):
                problems.append(
                    f"{layer.name}.weight: max |w| {weight['max_abs']:.4g} beyond Glorot's bound {limit:.4g}"
                )
        if bias is not None and bias["max_abs"] != 0.0:
            problems.append(f"{layer.name}.bias: max |b| {bias['max_abs']:.3g}, want 0")
    assert not problems, f"{preset} / {backend} / {role}: " + "; ".join(problems)


def test_dropout_drops_at_the_configured_rate(report, preset, backend):
    """Dropout's `rate` is the probability of dropping in every framework (not of keeping), the
    kept values are scaled by 1 / (1 - rate), and eval mode is the identity. (The numeric
    parity checks compare train mode without dropout, whose masks each framework draws its own way.)"""
    spec = discriminator_spec(make_config(preset).model)
    rates = {layer.name: layer.rate for layer in spec.layers if layer.kind == "dropout"}
    assert set(report["dropout"]) == set(rates), f"{preset} / {backend}: dropout layers {sorted(report['dropout'])}"
    for name, rate in rates.items():
        train, evaluation = report["dropout"][name]["train"], report["dropout"][name]["eval"]
        n = 64 * 64  # at least this many live inputs reach each mnist28 dropout layer
        assert abs(train["zero_fraction"] - rate) < 6 * math.sqrt(rate * (1 - rate) / n), (
            f"{preset} / {backend} / {name}: {train}"
        )
        assert math.isclose(train["kept_scale_min"], 1 / (1 - rate), rel_tol=1e-5), (
            f"{preset} / {backend} / {name}: {train}"
        )
        assert math.isclose(train["kept_scale_max"], 1 / (1 - rate), rel_tol=1e-5), (
            f"{preset} / {backend} / {name}: {train}"
        )
        assert evaluation == {"zero_fraction": 0.0, "kept_scale_min": 1.0, "kept_scale_max": 1.0}, (
            f"{preset} / {backend} / {name}: {evaluation}"
        )
