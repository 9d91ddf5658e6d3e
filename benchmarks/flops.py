"""FLOPs of one training iteration, counted from the architecture spec.

The counting rule, the one PyTorch's FLOP counter (torch.utils.flop_counter) uses:

- a linear, convolution or transposed convolution costs 2 FLOPs (a multiply and an add)
  per multiply-accumulate. A convolution does out_h·out_w·out_c·in_c·k² of them per example;
  a transposed one in_h·in_w·in_c·out_c·k² (every input pixel times the whole kernel, the
  border its padding crops included). Biases, BN, activations, losses and Adam are
  elementwise, O(activations) not O(activations × channels), and are not counted;
- a backward pass costs the forward's FLOPs once for the weight gradient and once more
  for the input gradient, which is skipped into a network's own input where nothing needs
  it (D's images in its own update, G's latent vectors).

An iteration (common/algorithm.py) with k D steps, batch N: per D step, G forward, D
forward on the real and on the fake batch, and D's backward for both; then the G step: G
forward again only for "fresh" fakes, D forward, D's backward to its input (not to its
weights: the G step does not update D), and G's backward. That is the work the algorithm
needs; a framework that does more (PyTorch's `loss_G.backward()` also fills D's weight
gradients, Keras's G step runs G's forward again) is slower for it, not credited for it.
"""

from __future__ import annotations

from common.config import Config
from common.spec import Layer, NetworkSpec, discriminator_spec, generator_spec


def layer_flops(layer: Layer) -> int:
    """Forward FLOPs of one layer for one example (0 for layers without weights)."""
    if layer.kind == "linear":
        return 2 * layer.in_features * layer.out_features
    if layer.kind == "conv":
        out_c, out_h, out_w = layer.out_shape
        return 2 * out_h * out_w * out_c * layer.in_channels * layer.kernel**2
    if layer.kind == "conv_transpose":
        in_c, in_h, in_w = layer.in_shape
        return 2 * in_h * in_w * in_c * layer.out_channels * layer.kernel**2
    return 0


def forward_flops(spec: NetworkSpec, batch: int) -> int:
    return batch * sum(layer_flops(layer) for layer in spec.layers)


def backward_flops(spec: NetworkSpec, batch: int, weights: bool = True, input_grad: bool = False) -> int:
    """A backward pass through `spec`: weight gradients (when `weights`) and input gradients
    of every weighted layer, but into the network's own input only when `input_grad`."""
    weighted = [layer_flops(layer) for layer in spec.layers if layer_flops(layer)]
    inputs = sum(weighted) if input_grad else sum(weighted[1:])
    return batch * ((sum(weighted) if weights else 0) + inputs)


def iteration_flops(config: Config, batch: int) -> int:
    """FLOPs of one training iteration, by the rule in this module's docstring."""
    g, d = generator_spec(config.model), discriminator_spec(config.model)
    k = config.optim.d_steps
    d_step = forward_flops(g, batch) + 2 * forward_flops(d, batch) + 2 * backward_flops(d, batch)
    g_step = (
        (forward_flops(g, batch) if config.optim.g_fake_batch == "fresh" else 0)
        + forward_flops(d, batch)
        + backward_flops(d, batch, weights=False, input_grad=True)
        + backward_flops(g, batch)
    )
    return k * d_step + g_step


def largest_layer(config: Config) -> Layer:
    """The model's layer with the most FLOPs: the convolution the machine's peak is measured on."""
    layers = [*generator_spec(config.model).layers, *discriminator_spec(config.model).layers]
    return max(layers, key=layer_flops)
