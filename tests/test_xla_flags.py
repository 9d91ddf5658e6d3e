"""XLA:CPU's oneDNN flags leave the suite's convolutions to XLA's own kernels in the pinned
jaxlib: docs/speed.md says so, and this test fails the day a jaxlib compiles them differently
under the flags, so that the JAX backends' speed with them is measured again."""

from __future__ import annotations

import os
import subprocess
import sys

# A strided convolution (D's kind, and the lhs-dilated one of G's transposed convolutions in
# its input gradient) with both its gradients, compiled for the CPU; the compiled HLO less its
# source-line metadata.
PROGRAM = r"""
import re
import jax
import jax.numpy as jnp
from jax import lax

def loss(w, x):
    return lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()

x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((4, 4, 4, 8))
text = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(w, x).compile().as_text()
print(re.sub(r", metadata=\{[^}]*\}", "", text))
"""
# The flags the pinned jaxlib knows for oneDNN (openxla/xla's XLA:CPU oneDNN thunks).
ONEDNN = "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"


def compiled(flags: str) -> str:
    # compiled afresh: an executable from the tests' compilation cache would not be this one
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_COMPILATION_CACHE": "false"}
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # an unknown flag is fatal: these are known
    return done.stdout


def test_the_onednn_flags_leave_the_convolutions_to_xla():
    plain, onednn = compiled(""), compiled(ONEDNN)
    assert plain.count(" convolution(") == 3  # the forward and both gradients
    assert "custom-call" not in onednn
    assert onednn == plain
