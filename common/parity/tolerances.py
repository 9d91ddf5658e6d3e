"""The checks, and for each precision and check how a difference is scaled and how large it
may be: the policy of common/parity/__init__.py's docstring, as data that the comparison and
the report read alike."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# check -> the prefix of the measured arrays it compares
CHECKS = {
    "forward (train)": "forward.train.",
    "forward (eval)": "forward.eval.",
    "gradients": "grad.",
    "Adam update": "update.",
    "1 iteration": "step1.",
    "5 iterations": "steps5.",
    "feature network": "feature_network.",  # `dcgan eval`'s, in eval mode: its features and logits
}


class Scale(Enum):
    """How a difference is scaled before it meets its tolerance; the value says it in words.

    A tensor's largest value scales a float32 forward pass, whose rounding grows with the
    values it rounds. A gradient is scaled by the largest gradient of its layer, not by its
    own: a bias that batch norm follows has a true gradient of zero, so its float32 gradient
    is pure rounding noise, and only the layer's scale says whether that noise is small."""

    ABSOLUTE = "absolute"
    RELATIVE_TO_TENSOR_MAX = "relative to max(1, the tensor's largest value)"
    RELATIVE_TO_LAYER_MAX = "relative to the largest gradient of the tensor's layer"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Tolerance:
    """The largest scaled difference a check allows; limit None: reported, not judged."""

    limit: float | None
    scale: Scale


TOLERANCES = {
    "float64": {check: Tolerance(1e-9, Scale.ABSOLUTE) for check in CHECKS},
    "float32": {
        "forward (train)": Tolerance(1e-5, Scale.RELATIVE_TO_TENSOR_MAX),
        "forward (eval)": Tolerance(1e-5, Scale.RELATIVE_TO_TENSOR_MAX),
        "gradients": Tolerance(1e-4, Scale.RELATIVE_TO_LAYER_MAX),
        "Adam update": Tolerance(1e-7, Scale.ABSOLUTE),
        "1 iteration": Tolerance(None, Scale.ABSOLUTE),
        "5 iterations": Tolerance(None, Scale.ABSOLUTE),
        "feature network": Tolerance(1e-5, Scale.RELATIVE_TO_TENSOR_MAX),
    },
}
