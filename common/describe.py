"""`dcgan describe`: the per-layer table of both networks, from the spec or from a built model.

From the spec, shapes and counts are the analytic ones. From a backend, every figure is
read off the built model: shapes by running a batch through it layer by layer, counts by
summing its trainable parameters, so three frameworks can be compared side by side.
Output shapes are per example, in the spec's CHW layout; `native_shape` is the layout the
framework itself holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.algorithm import latent
from common.backends import Backend, to_canonical_shape
from common.config import Config
from common.presets import PRESETS
from common.spec import NetworkSpec, discriminator_spec, generator_spec


def example_inputs(config: Config, spec: NetworkSpec, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A canonical batch for `spec`: latent vectors from the preset's distribution (G), or
    images in [-1, 1], NCHW (D)."""
    rng = np.random.default_rng(seed)
    if len(spec.in_shape) == 1:
        return latent(config, batch, rng)
    return rng.uniform(-1.0, 1.0, (batch, *spec.in_shape)).astype(np.float32)


def describe(config: Config, backend: Backend | None = None) -> dict[str, Any]:
    specs = {"generator": generator_spec(config.model), "discriminator": discriminator_spec(config.model)}
    description: dict[str, Any] = {"preset": config.preset, "backend": backend.name if backend else "spec"}
    if backend is None:
        for role, spec in specs.items():
            layers = [
                {"name": layer.name, "kind": layer.kind, "output_shape": list(layer.out_shape), "params": layer.params}
                for layer in spec.layers
            ]
            description[role] = {"params": spec.params, "layers": layers}
        return description
    networks = dict(zip(specs, backend.build(config)))
    for role, spec in specs.items():
        description[role] = describe_model(backend, networks[role], spec, config)
    return description


def describe_model(backend: Backend, network: Any, spec: NetworkSpec, config: Config) -> dict[str, Any]:
    """Shapes and parameter counts as the built `network` reports them."""
    kinds = {layer.name: layer.kind for layer in spec.layers}
    parameters = backend.parameters(network)
    layers = []
    for name, module, output in backend.run_layers(network, example_inputs(config, spec)):
        native = tuple(output.shape[1:])
        kind = kinds.get(name, "helper")  # a framework-only layer, e.g. Keras's Permute before Flatten
        layers.append(
            {
                "name": name,
                "kind": kind,
                "module": module,
                # A helper's output has no spec layout to translate to: it stays as the framework holds it.
                "output_shape": list(native if kind == "helper" else to_canonical_shape(native, backend.layout)),
                "native_shape": list(native),
                "params": int(sum(p.size for p in parameters.get(name, {}).values())),
            }
        )
    return {"params": sum(layer["params"] for layer in layers), "layers": layers}


def format_table(description: dict[str, Any]) -> str:
    preset = PRESETS.get(description["preset"])
    lines = []
    if preset:
        lines += [f"{preset.name}: {preset.source}"] + [f"  differs: {d}" for d in preset.differences] + [""]
    for role in ("generator", "discriminator"):
        net = description[role]
        has_module = any("module" in layer for layer in net["layers"])
        lines.append(f"{role} ({description['preset']}, {description['backend']})")
        header = (
            f"  {'layer':<12} {'kind':<15} "
            + (f"{'module':<20} " if has_module else "")
            + f"{'output (CHW)':<18} {'params':>12}"
        )
        lines.append(header)
        for layer in net["layers"]:
            shape = "x".join(map(str, layer["output_shape"])) + (" (as held)" if layer["kind"] == "helper" else "")
            module = f"{layer['module']:<20} " if has_module else ""
            lines.append(f"  {layer['name']:<12} {layer['kind']:<15} {module}{shape:<18} {layer['params']:>12,}")
        lines.append(f"  {'total':<{len(header) - 15}} {net['params']:>12,}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
