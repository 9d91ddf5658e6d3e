"""The benchmarks: the FLOP count against PyTorch's counter, the reference loop against the
torch build, skip rules, the report's arithmetic, and a smoke run of `python -m benchmarks`
on a tiny configuration whose JSON is checked field by field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import flops, report
from benchmarks.modes import MODES, skip_reason
from benchmarks.peak import vendor_peak
from benchmarks.worker import make_batch
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_iteration_flops_match_pytorchs_flop_counter(preset):
    """PyTorch counts our rule exactly, plus one thing the algorithm does not need: its G step's
    backward also fills D's weight gradients (a D forward's worth)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from common.backends import load_backend

    config = make_config(preset, {})
    trainer = load_backend("torch").trainer(config)
    batch = make_batch(config, 3)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(*batch)
    d_forward = flops.forward_flops(discriminator_spec(config.model), 3)
    assert counter.get_total_flops() == flops.iteration_flops(config, 3) + d_forward

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trainer.generator(torch.from_numpy(batch[1][0]))
    assert counter.get_total_flops() == flops.forward_flops(generator_spec(config.model), 3)


def test_flops_scale_with_batch_and_fresh_fakes_cost_one_more_g_forward():
    config = make_config("dcgan64", {})
    assert flops.iteration_flops(config, 64) == 64 * flops.iteration_flops(config, 1)
    fresh = make_config("dcgan64", {"optim.g_fake_batch": "fresh"})
    g = flops.forward_flops(generator_spec(config.model), 8)
    assert flops.iteration_flops(fresh, 8) - flops.iteration_flops(config, 8) == g
    assert flops.largest_layer(config).kind in ("conv", "conv_transpose")


def test_reference_loop_trains_the_same_model_as_the_torch_build():
    """One iteration of the tutorials' loop and of pytorch_impl, from the same weights and
    batch, leave the same weights: the baseline does the same work, only differently."""
    torch = pytest.importorskip("torch")
    from benchmarks.reference_loop import ReferenceLoop
    from common.backends import load_backend

    config = make_config("svhn32", {})  # no dropout: its masks follow the memory layout, which differs
    batch = make_batch(config, 6)
    reference = ReferenceLoop(config)
    metrics = reference.step(reference.prepare(*batch))
    trainer = load_backend("torch").trainer(config)  # seeds dropout's stream as the reference did
    expected = trainer.train_step(*batch)
    for name in expected:
        assert metrics[name] == pytest.approx(float(expected[name]), rel=1e-5, abs=1e-6), name
    # Adam's first update is ±lr wherever |g| >> eps, so a gradient near 0 whose float32 sign
    # differs between the two (NCHW vs channels-last sums) moves a weight by up to 2·lr.
    lr = config.optim.lr_g
    for ours, theirs in ((trainer.generator, reference.netG), (trainer.discriminator, reference.netD)):
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            diff = (a.float() - b.float()).abs()
            assert diff.max() <= 2.01 * lr and (diff > 1e-5).float().mean() < 0.01, name


def test_skip_rules_name_the_reason():
    cpu = {"avx512f", "avx512_bf16"}
    assert "NVIDIA" in skip_reason(MODES["torch-eager"], "tf32", "cpu", cpu)
    assert "CUDA graphs" in skip_reason(MODES["torch-compile-reduce-overhead"], "fp32", "cpu", cpu)
    assert "float32" in skip_reason(MODES["reference-loop"], "bf16", "cpu", cpu)
    assert "bfloat16 instructions" in skip_reason(MODES["jax-jit"], "bf16", "cpu", {"avx2"})
    assert skip_reason(MODES["jax-jit"], "bf16", "cpu", cpu) == ""
    assert skip_reason(MODES["torch-compile-reduce-overhead"], "tf32", "gpu") == ""


def test_vendor_peaks_are_found_by_the_gpus_name():
    assert vendor_peak("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert vendor_peak("NVIDIA H200", "tf32") == pytest.approx(494.7e12)
    assert vendor_peak("Some Future GPU", "fp32") is None


def _record(mode, precision, median, batch=64, preset="dcgan64"):
    return {"mode": mode, "precision": precision, "preset": preset, "batch_size": batch, "status": "ok",
            "median_s": median, "images_per_s": batch / median}


def test_targets_report_met_and_missed_with_the_figure_reached():
    records = [_record("reference-loop", "fp32", 0.6), _record("torch-eager", "fp32", 0.4),
               _record("jax-jit", "fp32", 0.7), _record("keras-tensorflow", "fp32", 0.5),
               _record("torch-eager", "bf16", 0.3)]
    from benchmarks.runner import add_speedups

    add_speedups(records)
    found = {t["target"]: t for t in report.targets({"records": records})}
    fastest = found["fastest fp32 mode ≥ 1.4× reference-loop"]
    assert (fastest["mode"], fastest["met"]) == ("torch-eager", True) and fastest["value"] == pytest.approx(1.5)
    jax = found["jax's best fp32 within 1.5× of the fastest"]
    assert jax["met"] is False and jax["value"] == pytest.approx(0.7 / 0.4)
    assert found["best bf16 ≥ 2.2× reference-loop"]["met"] is False  # 2.0×

    skipped = {**_record("jax-jit", "bf16", 1.0), "status": "skipped", "reason": "no bfloat16 instructions"}
    records = [r for r in records if r["precision"] != "bf16"] + [skipped]
    bf16 = {t["target"]: t for t in report.targets({"records": records})}["best bf16 ≥ 2.2× reference-loop"]
    assert bf16["met"] is None and "bfloat16" in bf16["reason"]  # not applicable, and why


def test_limit_is_the_iterations_flops_at_the_best_convolution_and_bounds_the_speed_up():
    """100 GFLOP at 50 GFLOP/s: 2 s/it, 32 images/s at batch 64, and with the reference at
    3 s/it no mode can be more than 1.5x faster than it."""
    records = [{**_record(mode, "fp32", median), "flops_per_iter": 100e9, "limit_s": 2.0}
               for mode, median in (("reference-loop", 3.0), ("torch-eager", 2.5))]
    peak = {"precision": "fp32", "preset": "dcgan64", "batch_size": 64}
    line = report.limit_line({"records": records}, peak)
    assert "100.0 GFLOP at 50 GFLOP/s = 2.000 s/it (32.0 images/s)" in line and "1.50× reference-loop" in line
    assert report.limit_line({"records": records}, {**peak, "batch_size": 128}) == ""  # nothing timed there


def test_bench_rejects_an_unknown_mode_by_name():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--modes", "torch-fast"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "torch-fast" in out.stderr and "torch-eager" in out.stderr


SMOKE_MODES = ["reference-loop", "torch-eager", "torch-compile-reduce-overhead", "jax-jit", "keras-tensorflow",
               "keras-tensorflow-xla", "keras-jax", "keras-torch"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The benchmark on mnist28 at batch 4, two timed blocks per mode, fp32, tf32 and bf16."""
    pytest.importorskip("torch"), pytest.importorskip("jax"), pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks", "--preset", "mnist28", "--batch-size", "4", "--repeats", "2",
               "--warmup", "1", "--device", "cpu", "--gemm-size", "128", "--modes", *SMOKE_MODES,
               "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md"), "--plot", str(out / "bench.png")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), out


def test_smoke_json_has_every_field_in_its_unit(smoke):
    results, _ = smoke
    config = make_config("mnist28", {})
    ok = [r for r in results["records"] if r["status"] == "ok"]
    assert {r["mode"] for r in ok} == set(SMOKE_MODES) - {"torch-compile-reduce-overhead"}
    for r in ok:
        assert r["device"] == "cpu" and r["batch_size"] == 4 and r["preset"] == "mnist28"
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["compile_s"] > 0
        assert r["images_per_s"] == pytest.approx(4 / r["median_s"])
        assert r["flops_per_iter"] == flops.iteration_flops(config, 4)
        assert r["gflops_per_s"] == pytest.approx(r["flops_per_iter"] / r["median_s"] / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gflops_per_s"] * 1e9 / r["peak_flops_per_s"])
        assert 100 * 2**20 < r["peak_mem_bytes"] < 16 * 2**30  # bytes, not KiB (ru_maxrss is KiB on Linux)
        assert r["finite"], r["final_metrics"]
    reference = next(r for r in ok if r["mode"] == "reference-loop")
    assert reference["speedup_vs_reference"] == pytest.approx(1.0)
    for r in ok:
        assert r["speedup_vs_reference"] == pytest.approx(reference["median_s"] / r["median_s"])
    assert {r["precision"] for r in ok} == ({"fp32", "bf16"} if _has_bf16() else {"fp32"})


def _has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions, so the smoke run times bf16 rather than skipping it."""
    from benchmarks.environment import cpu_info

    return not skip_reason(MODES["jax-jit"], "bf16", "cpu", set(cpu_info()["flags"]))


def test_smoke_lists_what_it_skipped_and_why(smoke):
    results, _ = smoke
    skipped = {(r["mode"], r["precision"]): r["reason"] for r in results["records"] if r["status"] == "skipped"}
    assert all("NVIDIA" in skipped[(m, "tf32")] for m in SMOKE_MODES)
    assert "CUDA graphs" in skipped[("torch-compile-reduce-overhead", "fp32")]
    assert ("reference-loop", "bf16") in skipped
    if not _has_bf16():
        cpu_modes = set(SMOKE_MODES) - {"reference-loop", "torch-compile-reduce-overhead"}
        assert all("bfloat16 instructions" in skipped[(m, "bf16")] for m in cpu_modes)


def test_smoke_records_the_environment_and_the_peak(smoke):
    results, _ = smoke
    env = results["environment"]
    assert env["cpu"]["usable_cpus"] >= 1 and env["versions"]["torch"] and env["commit"]
    peaks = {p["precision"]: p for p in results["peaks"]}
    assert set(peaks) == ({"fp32", "bf16"} if _has_bf16() else {"fp32"})  # only where a mode runs
    for p in peaks.values():
        assert p["machine_flops_per_s"] == max(p["conv_flops_per_s"], p["gemm_flops_per_s"]) > 1e8
        assert {f["framework"] for f in p["by_framework"]} == {"torch", "jax", "tensorflow"}


def test_smoke_writes_a_table_and_a_chart(smoke):
    results, out = smoke
    table = (out / "bench.md").read_text()
    assert "| keras-jax | fp32 |" in table and "skipped: TF32" in table
    from PIL import Image

    with Image.open(out / "bench.png") as image:
        assert image.size[0] > 500 and np.asarray(image.convert("L")).std() > 10  # drawn, not blank


def test_workers_compile_from_an_empty_cache_of_their_own(tmp_path, monkeypatch):
    """compile_s is a cold compilation: neither Inductor's on-disk cache nor a JAX cache the
    caller set (the test session sets one) reaches the worker."""
    from benchmarks.runner import worker_env

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "shared"))
    env = worker_env("cpu", tmp_path / "own")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "own") and "JAX_COMPILATION_CACHE_DIR" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["JAX_PLATFORMS"] == "cpu"


def test_layer_timings_cover_every_convolution_and_pass():
    """benchmarks.layers (torch only, to stay quick): one row per pass of every convolution
    of the preset, each a positive time, and a total."""
    pytest.importorskip("torch")
    from benchmarks.layers import PASSES, conv_layers

    out = subprocess.run([sys.executable, "-m", "benchmarks.layers", "--preset", "mnist28", "--batch-size", "2",
                          "--repeats", "1", "--frameworks", "torch"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| conv")]
    expected = [(layer.name, p) for layer in conv_layers("mnist28", 2) for p in PASSES]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == expected
    assert all(float(r[2]) > 0 for r in rows) and "**all**" in out.stdout


def test_profile_lists_the_ops_of_a_torch_mode():
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--mode", "torch-eager", "--preset", "mnist28",
                          "--batch-size", "2", "--steps", "1"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "convolution" in out.stdout and "Self CPU" in out.stdout
    refused = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--mode", "jax-jit"], cwd=ROOT,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "jax-jit" in refused.stderr and "torch-eager" in refused.stderr
