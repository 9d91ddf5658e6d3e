"""What keras_impl's layers compute through PyTorch itself on Keras's torch backend.

Keras 3.15's torch backend keeps Keras's NHWC tensors and gives PyTorch what it asks for by
copying: `ops.conv` copies its input to NCHW and back to channels-last for each convolution,
`ops.conv_transpose` copies its input to NCHW and computes the unpadded output, then crops
it (a copy, and a zero-padded copy of the gradient on the way back), and BatchNormalization
is a chain of a dozen elementwise ops and sums, each a pass over the feature map there and
back. PyTorch runs channels-last convolutions and batch norm as they are: an NHWC tensor
permuted to NCHW is a channels-last view, no copy, so these functions take Keras's tensors,
hand PyTorch the views and return NHWC views of its outputs; only the kernels are copied, once
a call (docs/benchmarks.md has the profile and the step times).

In float64 the convolutions take PyTorch's contiguous NCHW and OIHW instead: its CPU float64
convolution (`slow_conv2d`) refuses the weight gradient of a channels-last convolution with
one output channel, "grad_weight must be contiguous" (docs/conventions.md). The layers built
on these functions compute Keras's own layers' values and gradients (tests/test_keras_on_torch.py),
and the parity suite holds the models to PyTorch's numbers in float64 and float32 (tests/parity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """NHWC -> NCHW: a channels-last view, or in float64 a contiguous copy."""
    x = x.permute(0, 3, 1, 2)
    return x.contiguous() if x.dtype == torch.float64 else x


def _torch_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Keras's kernel (kh, kw, a, b) -> PyTorch's (b, a, kh, kw): Conv2D's HWIO -> OIHW and
    Conv2DTranspose's HWOI -> IOHW are the same permutation. A channels-last copy (contiguous
    in float64): no view of Keras's HWIO is one, and PyTorch would otherwise copy it in the
    forward pass and again in the backward."""
    kernel = kernel.permute(3, 2, 0, 1)
    layout = torch.contiguous_format if kernel.dtype == torch.float64 else torch.channels_last
    return kernel.contiguous(memory_format=layout)


def conv2d(inputs: torch.Tensor, kernel: torch.Tensor, strides: tuple[int, int], padding):
    """Keras's Conv2D on NHWC `inputs` and an HWIO kernel -> NHWC. `padding`: ((top, bottom),
    (left, right)); PyTorch pads symmetric padding itself, and asymmetric is padded first."""
    x = _nchw(inputs)
    if any(low != high for low, high in padding):
        (top, bottom), (left, right) = padding
        x, padding = F.pad(x, (left, right, top, bottom)), ((0, 0), (0, 0))
    outputs = F.conv2d(x, _torch_kernel(kernel), stride=strides, padding=[low for low, _ in padding])
    return outputs.permute(0, 2, 3, 1)


def conv_transpose2d(inputs: torch.Tensor, kernel: torch.Tensor, strides: tuple[int, int], crop: tuple[int, int]):
    """Keras's Conv2DTranspose on NHWC `inputs` and an HWOI kernel -> NHWC. `crop`: the rows
    and columns taken off each side of the full output (PyTorch's `padding`)."""
    outputs = F.conv_transpose2d(_nchw(inputs), _torch_kernel(kernel), stride=strides, padding=crop)
    return outputs.permute(0, 2, 3, 1)


def batch_norm(x: torch.Tensor, gamma, beta, epsilon: float, moving_mean, moving_variance, momentum=None):
    """BN over every axis but the last (channels) -> (outputs, moving_mean, moving_variance).

    With `momentum` None: inference, normalised by the moving statistics, which it returns
    as they are. With Keras's `momentum`: training, normalised by the batch's mean and biased
    variance, and returned with the moving statistics moved towards the batch's mean and
    UNBIASED variance by PyTorch's own update (its momentum is 1 - Keras's); it updates
    copies, so the layer's variables change only when Keras assigns them."""
    channels_first = x.movedim(-1, 1)
    training = momentum is not None
    if training:
        moving_mean, moving_variance = moving_mean.clone(), moving_variance.clone()
    torch_momentum = 1.0 - momentum if training else 0.0
    outputs = F.batch_norm(channels_first, moving_mean, moving_variance, gamma, beta, training, torch_momentum, epsilon)
    return outputs.movedim(1, -1), moving_mean, moving_variance
