"""torch.compile trains as eager PyTorch does: pytorch_impl's train step under `--compile
default` (Inductor; what `dcgan train --compile` and the benchmark's torch-compile mode run)
gives, on the CPU, eager's losses and, after two iterations, eager's weights, BN statistics
and Adam moments, to float32 rounding.

Inductor compiles C++ on a CPU, so the test needs a C++ compiler: without one it fails,
saying so, rather than being skipped. The preset is svhn32 at width 8 and batch 4: it has no
dropout, whose masks Inductor draws from its own generator, not eager's, so every difference
left is rounding. Compiling the step's graphs is most of the test's time, about 50 s of CPU,
so `make test` leaves it out and `make test-compile` (CI runs both) runs it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

SCRIPT = """
import json, sys
import numpy as np
from torch._dynamo.utils import counters
from torch._inductor import cpp_builder
from benchmarks.worker import make_batch
from common.backends import load_backend
from common.presets import make_config

try:
    cpp_builder.get_cpp_compiler()
except Exception as err:
    sys.exit(f"torch.compile cannot run here: Inductor compiles C++ on a CPU and found no compiler ({err})")
out = sys.argv[1]
config = make_config("svhn32", {"model.ngf": 8, "model.ndf": 8})
batch = make_batch(config, 4)
for name, compile in (("eager", None), ("compiled", "default")):
    trainer = load_backend("torch", "float32", compile).trainer(config)
    metrics = [trainer.train_step(*batch) for _ in range(2)]
    state = {k: a for k, a in trainer.state_dict().items() if a.dtype.kind == "f" and not k.startswith("rng.")}
    losses = {f"losses.{i}.{k}": np.float64(v) for i, m in enumerate(metrics) for k, v in m.items()}
    np.savez(f"{out}/{name}.npz", **state, **losses)
graphs, inductor = counters["stats"]["unique_graphs"], counters["inductor"]["fxgraph_cache_miss"]
print(json.dumps({"graphs": graphs, "inductor": inductor}))
"""


@pytest.mark.torch_compile
def test_the_compiled_train_step_matches_eager_in_float32(dcgan, tmp_path, monkeypatch):
    """Two iterations each way from the same weights and batch: every metric of each iteration
    within 1e-5 of eager's (relative), every floating array of the state within 1e-4 of its
    largest value (a weight moves by the learning rate, 2e-4, per Adam step: one step gone
    astray is far outside it). Inductor, from an empty cache, compiled the graphs (it is not
    eager under another name)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    done = dcgan.python("-c", SCRIPT, str(tmp_path))
    compiled = json.loads(done.stdout.strip().splitlines()[-1])
    assert compiled["graphs"] >= 2 and compiled["inductor"] >= 2, compiled  # G and D, at least
    with np.load(tmp_path / "eager.npz") as eager_file, np.load(tmp_path / "compiled.npz") as compiled_file:
        eager, found = dict(eager_file), dict(compiled_file)
    assert set(found) == set(eager) and any(k.startswith("losses.1.") for k in eager)
    for key, expected in eager.items():
        if key.startswith("losses."):
            np.testing.assert_allclose(found[key], expected, rtol=1e-5, err_msg=key)
        else:
            scale = float(np.abs(expected).max()) if expected.size else 0.0
            assert np.abs(found[key] - expected).max(initial=0.0) <= 1e-4 * scale, key
