"""What the training loop watches for besides the clock: a diverged run, which it stops,
and the two classic GAN failures it can only warn about, a discriminator that wins outright
(G's gradient vanishes: Goodfellow et al. 2014, section 3; Arjovsky & Bottou 2017) and
samples that collapse onto a few classes (mode collapse; Salimans et al. 2016).
"""

from __future__ import annotations

import math

import numpy as np

from common.algorithm import METRICS
from common.errors import RunStopped

NETWORKS = {"generator": "the generator (G)", "discriminator": "the discriminator (D)"}

# D wins outright when D(x) stays above WIN and D(G(z)) (as G's update sees it) below 1 - WIN
# for WIN_STREAK iterations in a row: G then learns almost nothing from log D(G(z)).
WIN, WIN_STREAK = 0.98, 200
# Samples "collapse" when they cover fewer than this share of the classes they covered at
# their best earlier in the run. Not of all the classes: early samples cover few (2 to 8 of
# Fashion-MNIST's 10 at iteration 500 in every run of benchmarks/results/quality/) and
# gain the rest as they train; collapse is losing classes once drawn.
COLLAPSE_SHARE = 0.5


class Diverged(RunStopped, FloatingPointError):
    """A loss, a D output or a weight became NaN or infinite at iteration `step`; the run
    stops without saving that state."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def check_finite(metrics: dict, step: int, backend: str, state: dict[str, np.ndarray] | None = None) -> None:
    """Raises Diverged where a metric of iteration `step` is not finite, naming the networks
    whose weights went bad with it (`state`: the trainer's canonical state, read only then)."""
    bad = [k for k in METRICS if not math.isfinite(metrics[k])]
    if bad:
        networks = non_finite_networks(state) if state is not None else []
        where = f"; non-finite weights in {' and '.join(networks)}" if networks else ""
        raise Diverged(
            f"error: training diverged on {backend} at iteration {step}: {', '.join(bad)} not finite{where}. "
            "The run's checkpoints are left as they were; resume from the last one with a lower learning rate "
            "(--resume --set optim.lr_d=... --set optim.lr_g=...)",
            step,
        )


def check_finite_state(state: dict[str, np.ndarray], step: int, backend: str) -> None:
    """Raises Diverged where a weight or BN statistic of the state to be saved is not finite."""
    networks = non_finite_networks(state)
    if networks:
        raise Diverged(
            f"error: training diverged on {backend} by iteration {step}: non-finite weights in "
            f"{' and '.join(networks)}, so that state is not saved. The run's checkpoints are left as they were",
            step,
        )


def non_finite_networks(state: dict[str, np.ndarray]) -> list[str]:
    found = {key.split(".")[0] for key, a in state.items() if a.dtype.kind == "f" and not np.isfinite(a).all()}
    return [NETWORKS[n] for n in NETWORKS if n in found]


class Watch:
    """Warns once per run of each failure it sees; `observe` returns the warning to print, if any."""

    def __init__(self):
        self.streak = 0
        self.most_classes = 0  # the most classes the scored samples have covered so far
        self.warned: set[str] = set()

    def observe(self, record: dict) -> str | None:
        self.streak = self.streak + 1 if record["D_x"] > WIN and record["D_G_z2"] < 1 - WIN else 0
        if self.streak >= WIN_STREAK and "wins" not in self.warned:
            self.warned.add("wins")
            return (
                f"warning: at iteration {record['step']} D has won outright for {self.streak} iterations "
                f"(D(x) > {WIN}, D(G(z)) < {1 - WIN:.2f}), so G learns little; a lower optim.lr_d or one-sided "
                "label smoothing (optim.real_label=0.9) often helps"
            )
        classes = record.get("classes_covered")
        if classes is None:
            return None
        self.most_classes = max(self.most_classes, classes)
        if classes < COLLAPSE_SHARE * self.most_classes and "collapse" not in self.warned:
            self.warned.add("collapse")
            return (
                f"warning: at iteration {record['step']} the samples cover {classes} classes, down from "
                f"{self.most_classes} earlier in the run (mode collapse?); see the sample grids"
            )
        return None
