"""Numeric parity: the same weights and inputs through every backend, compared pair by pair.

Each backend runs in a process of its own (Keras fixes its backend per process; JAX and Keras
take float64 process-wide), all starting from one canonical state and the same inputs, and
reports, under canonical names and layouts:

    forward.train.<role>.<layer>   every layer's output, train mode (batch statistics)
    forward.eval.<role>.<layer>    the same in eval mode (running statistics)
    grad.<role>.<layer>.<param>    d loss_D / d D's parameters and d loss_G / d G's
    update.<canonical key>         one Adam update of every parameter from given gradients and state
    step1.<canonical key>          the whole state after one training iteration (k D updates + G update)
    steps5.<canonical key>         ... after five iterations on shared batches and noise
    steps5.<metric>                the metrics of each of the five iterations
    feature_network.features       `dcgan eval`'s feature network (common/quality/network.py)
    feature_network.logits         ... its logits; both in eval mode with the committed weights

The feature network is measured once per worker and reported with every case.

`compare` then holds every pair of backends to the tolerances of TOLERANCES. In float64, two
correct implementations of one algorithm agree to ~1e-11, so 1e-9 leaves room for nothing
but rounding: a larger difference is a different algorithm (a momentum convention, an
epsilon, a padding). In float32 the checks follow what float32 can promise: forward and
gradients relative to their scale, the Adam update from identical inputs; the trajectory
after Adam steps is reported, not judged (Adam's first steps move each parameter by about
lr·sign(g), and the sign of a tiny gradient follows summation order).

Dropout is random in each framework's own way, so train-mode checks run the preset with
dropout removed (`parity_config`); eval mode, where dropout is the identity, is what the
preset itself computes. tests/parity/test_numeric.py and `dcgan parity` both run this, with
`run_compared`: each precision's results are compared as soon as its last worker is done, read
array by array from the workers' files, so that no process holds them all (the float64 states
of dcgan64 alone are ~150 MB a backend, after one and after five iterations).

The modules, in the order a run goes through them: inputs (the state and inputs every backend
is given), workers (one process per backend and precision), measurement (what a worker
computes), tolerances (the checks and their limits), comparison (pair by pair), report (the
table), command (`dcgan parity`); structure is the other job the workers run, the builds'
shapes, parameter counts, initial values and dropout for tests/parity.
"""

from common.parity.comparison import Comparison, Measured, compare, compare_all
from common.parity.inputs import ITERATIONS, Inputs, make_inputs, parity_config, random_state
from common.parity.measurement import Compared, run_compared
from common.parity.report import format_table, trajectories
from common.parity.tolerances import CHECKS, TOLERANCES, Scale, Tolerance

__all__ = [
    "CHECKS",
    "ITERATIONS",
    "TOLERANCES",
    "Compared",
    "Comparison",
    "Inputs",
    "Measured",
    "Scale",
    "Tolerance",
    "compare",
    "compare_all",
    "format_table",
    "make_inputs",
    "parity_config",
    "random_state",
    "run_compared",
    "trajectories",
]
