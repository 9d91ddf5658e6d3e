"""The benchmarks: the FLOP count against PyTorch's counter, the reference loop against the
torch build, the batch's noise against common.algorithm, each framework's convolution call
against PyTorch's, skip rules, the report's arithmetic, the short run and the full grid as the
arguments give them, the committed run read back, and a smoke run of `python -m benchmarks` on
a tiny configuration whose JSON is checked field by field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import flops, report, scaling
from benchmarks.modes import MODES, PRECISIONS, skip_reason
from benchmarks.peak import vendor_peak
from benchmarks.worker import make_batch
from common.algorithm import iteration_noise
from common.presets import PRESETS, make_config
from common.spec import discriminator_spec, generator_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_iteration_flops_match_pytorchs_flop_counter(preset):
    """PyTorch counts our rule exactly, plus one thing the algorithm does not need: its G step's
    backward also fills D's weight gradients (a D forward's worth)."""
    import torch
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


@pytest.mark.parametrize("fakes", ["reuse", "fresh"])
def test_the_batch_noise_is_the_first_iterations_from_the_presets_distribution(fakes):
    """svhn32 draws z from U(-1, 1): the benchmark times it on that noise, drawn where every
    backend's training draws it, not on N(0, 1)."""
    config = make_config("svhn32", {"optim.g_fake_batch": fakes})
    reals, z_d, z_g = make_batch(config, 8)
    noise = iteration_noise(config, 0, 8)
    np.testing.assert_array_equal(z_d, noise.z_d)
    assert z_d.shape == (config.optim.d_steps, 8, config.model.latent_dim) and z_d.dtype == np.float32
    assert np.abs(z_d).max() <= 1.0
    if fakes == "fresh":
        np.testing.assert_array_equal(z_g, noise.z_g)
        assert np.abs(z_g).max() <= 1.0
    else:
        assert z_g is None
    assert reals.shape == (config.optim.d_steps, 8, 3, 32, 32) and np.abs(reals).max() <= 1.0


def test_each_frameworks_convolution_call_computes_pytorchs():
    """benchmarks.convolutions, which the peak and the per-layer timings use: for every
    convolution of mnist28, JAX's calls (lax's and jax_impl's) and
    TensorFlow's give PyTorch's output, of the spec's shape, from the same input and weights."""
    import jax
    import tensorflow as tf
    import torch

    from benchmarks.convolutions import jax_convolution, tensorflow_convolution, torch_convolution
    from benchmarks.layers import conv_layers

    for layer in conv_layers("mnist28", 2):
        conv, x, w = torch_convolution(layer, 2, torch.float32)
        with torch.no_grad():
            expected = conv(x, w).permute(0, 2, 3, 1).numpy()
        assert expected.shape == (2, *layer.out_shape[1:], layer.out_shape[0]), layer.name
        x_nhwc = x.permute(0, 2, 3, 1).numpy()
        # lax's transposed convolution correlates with the kernel PyTorch's convolves with: HWIO, flipped
        transposed = layer.kind == "conv_transpose"
        w_hwio = w.permute(2, 3, 0, 1).numpy()[::-1, ::-1].copy() if transposed else w.permute(2, 3, 1, 0).numpy()
        for as_built in (False, True):
            f, _, _ = jax_convolution(layer, 2, jax.numpy.float32, jax.random.key(0), as_built=as_built)
            with jax.default_matmul_precision("highest"):
                assert _relative_error(f(x_nhwc, w_hwio), expected) < 1e-5, (layer.name, as_built)
        f, _, _ = tensorflow_convolution(layer, 2, tf.float32)
        w_tf = w.permute(2, 3, 1, 0).numpy()  # tf: (k, k, in, out) for a convolution, (k, k, out, in) transposed
        assert _relative_error(f(x_nhwc, w_tf), expected) < 1e-5, layer.name


def _relative_error(ours, expected: np.ndarray) -> float:
    """In the 2-norm: float32 sums of hundreds of products, in other orders, differ by ~1e-7 of it."""
    ours = np.asarray(ours)
    assert ours.shape == expected.shape
    return float(np.linalg.norm(ours - expected) / np.linalg.norm(expected))


def test_skip_rules_name_the_reason():
    cpu = {"avx512f", "avx512_bf16"}
    assert "NVIDIA" in skip_reason(MODES["torch-eager"], "tf32", "cpu", cpu)
    assert "CUDA graphs" in skip_reason(MODES["torch-compile-reduce-overhead"], "float32", "cpu", cpu)
    assert "float32" in skip_reason(MODES["reference-loop"], "bf16", "cpu", cpu)
    assert "bfloat16 instructions" in skip_reason(MODES["jax-jit"], "bf16", "cpu", {"avx2"})
    assert skip_reason(MODES["jax-jit"], "bf16", "cpu", cpu) == ""
    assert skip_reason(MODES["torch-compile-reduce-overhead"], "tf32", "gpu") == ""


def test_vendor_peaks_are_found_by_the_gpus_name():
    assert vendor_peak("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert vendor_peak("NVIDIA H200", "tf32") == pytest.approx(494.7e12)
    assert vendor_peak("Some Future GPU", "float32") is None


def _record(mode, precision, median, batch=64, preset="dcgan64"):
    return {
        "mode": mode,
        "precision": precision,
        "preset": preset,
        "batch_size": batch,
        "status": "ok",
        "median_s": median,
        "images_per_s": batch / median,
    }


def test_summary_gives_ratios_within_the_run_without_verdicts():
    """The fastest float32 mode of the project's (reference-loop is the table's baseline, not a
    build) and its share of the limit's speed; each backend's best float32 mode as a multiple of
    the fastest's time, fastest first; bf16's speed-up over float32 where a backend ran it."""
    records = [
        {**_record(mode, precision, median), "limit_s": 0.3 if precision == "float32" else 0.15}
        for mode, precision, median in (
            ("reference-loop", "float32", 0.35),
            ("torch-eager", "float32", 0.4),
            ("torch-compile", "float32", 0.5),
            ("jax-jit", "float32", 0.7),
            ("keras-tensorflow", "float32", 0.6),
            ("torch-eager", "bf16", 0.25),
            ("torch-compile", "bf16", 0.2),
        )
    ]
    records.append({**_record("jax-jit", "bf16", 1.0), "status": "skipped", "reason": "no bfloat16 instructions"})
    found = report.summary("dcgan64", 64, records)
    assert (found["preset"], found["batch_size"], found["fastest_mode"]) == ("dcgan64", 64, "torch-eager")
    assert found["limit_fraction"] == pytest.approx(0.3 / 0.4)
    backends = {b["backend"]: b for b in found["backends"]}
    assert [b["backend"] for b in found["backends"]] == ["torch", "keras-tensorflow", "jax"]
    assert backends["jax"]["float32_mode"] == "jax-jit" and backends["jax"]["vs_fastest"] == pytest.approx(0.7 / 0.4)
    assert backends["torch"]["vs_fastest"] == 1.0
    assert backends["torch"]["bf16_mode"] == "torch-compile" and backends["torch"]["bf16_speedup"] == pytest.approx(2.0)
    assert backends["jax"]["bf16_speedup"] is None and backends["keras-tensorflow"]["bf16_mode"] is None
    assert not any(key in found for key in ("met", "target"))
    text = "\n".join(report.summary_lines(found))
    assert "The fastest float32 mode is torch-eager (0.400 s/it), at 75% of the float32 limit's speed" in text
    assert "| jax | jax-jit | 0.700 | 1.75 | – | – |" in text
    assert "| torch | torch-eager | 0.400 | 1.00 | torch-compile | 2.00 |" in text

    float32_only = [r for r in records if r["precision"] == "float32" and r["mode"] != "keras-tensorflow"]
    found = report.summary("dcgan64", 64, [{k: v for k, v in r.items() if k != "limit_s"} for r in float32_only])
    assert found["limit_fraction"] is None and "bf16" not in "\n".join(report.summary_lines(found))
    assert report.summary("dcgan64", 64, [_record("reference-loop", "float32", 0.35)]) is None


def test_skipped_modes_are_one_sentence_grouped_by_reason():
    """The committed CPU run's pattern: tf32 skipped everywhere, bf16 everywhere (with the
    reference's own reason), and a GPU-only mode in every precision."""
    records = [_record(m, "float32", 1.0) for m in ("reference-loop", "torch-eager", "jax-jit")]
    for mode in ("reference-loop", "torch-eager", "jax-jit", "torch-compile-reduce-overhead"):
        for precision in ("float32", "tf32", "bf16"):
            reason = (
                "CUDA graphs"
                if mode == "torch-compile-reduce-overhead"
                else "TF32 on GPUs"
                if precision == "tf32"
                else "the loop is float32"
                if mode == "reference-loop"
                else "no bf16 here"
            )
            if precision != "float32" or mode == "torch-compile-reduce-overhead":
                records.append({**_record(mode, precision, 1.0), "status": "skipped", "reason": reason})
    assert report.skipped_line(records) == (
        "Skipped: tf32 (all modes): TF32 on GPUs; torch-compile-reduce-overhead: CUDA graphs; "
        "bf16 (all modes): no bf16 here; reference-loop in bf16: the loop is float32."
    )
    assert report.skipped_line(records[:3]) == ""
    # where bf16 ran in some modes, the others are named
    partial = [r for r in records if not (r["precision"] == "bf16" and r["mode"] == "torch-eager")]
    partial.append(_record("torch-eager", "bf16", 0.5))
    assert "jax-jit in bf16: no bf16 here" in report.skipped_line(partial)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pass_counts_are_the_flop_counts_rule(preset):
    """How often an iteration runs each pass, times each layer's FLOPs, is flops.py's count of
    the iteration: the limit weights the passes as the FLOPs are counted. No input gradient
    into G's noise; D's first layer gets one, the G step's, into the images."""
    from benchmarks.layers import PASSES, pass_counts

    config = make_config(preset, {})
    g, d = (
        [layer for layer in spec.layers if flops.layer_flops(layer)]
        for spec in (generator_spec(config.model), discriminator_spec(config.model))
    )
    counts = pass_counts(config)
    total = sum(counts[layer.name, p] * flops.layer_flops(layer) for layer in g + d for p in PASSES)
    assert 8 * total == flops.iteration_flops(config, 8)
    assert counts[g[0].name, "input grad"] == 0 and counts[d[0].name, "input grad"] == 1
    assert counts[d[1].name, "input grad"] == 2 * config.optim.d_steps + 1


def _two_kernel_sets():
    """dcgan64 at batch 64: kernels "a" take 1 ms for every pass of every convolution, "b" 2 ms
    but 0.5 ms for each weight gradient."""
    from benchmarks.layers import PASSES, conv_layers

    names = [layer.name for layer in conv_layers("dcgan64", 64)]
    rows = {
        kernels: [{"layer": n, **{p: t(p) for p in PASSES}} for n in names]
        for kernels, t in (("torch", lambda p: 1e-3), ("jax", lambda p: 0.5e-3 if p == "weight grad" else 2e-3))
    }
    return rows


def test_limit_is_the_best_time_of_each_pass_and_bounds_every_kernel_set():
    """dcgan64 (k = 1, reused fakes) runs 20 convolution forwards, 17 input gradients (none
    into G's noise, one into the images) and 15 weight gradients an iteration: with the best
    forward and input gradient at 1 ms ("torch") and the best weight gradient at 0.5 ms
    ("jax"), the limit is 20 + 17 + 7.5 = 44.5 ms, under either set's own 52 and 81.5 ms."""
    from benchmarks.layers import as_times, limit, pass_counts, per_pass

    rows = _two_kernel_sets()
    counts = pass_counts(make_config("dcgan64", {}))
    times = {k: as_times(r) for k, r in rows.items()}
    found = limit(times, counts)
    assert found["limit_s"] == pytest.approx(44.5e-3)
    assert found["by_pass"] == pytest.approx({"forward": 20e-3, "input grad": 17e-3, "weight grad": 7.5e-3})
    assert {k for key, (_, k) in found["best"].items() if key[1] == "weight grad"} == {"jax"}
    assert {k for key, (_, k) in found["best"].items() if key[1] != "weight grad"} == {"torch"}
    own = {k: sum(per_pass(t, counts).values()) for k, t in times.items()}
    assert own == pytest.approx({"torch": 52e-3, "jax": 81.5e-3})


def _peak_with_passes():
    rows = _two_kernel_sets()
    return {
        "preset": "dcgan64",
        "batch_size": 64,
        "precision": "float32",
        "passes": rows,
        "limit_s": 44.5e-3,
        "limit_by_pass": {"forward": 20e-3, "input grad": 17e-3, "weight grad": 7.5e-3},
    }


def test_the_limit_line_says_where_the_limit_comes_from_and_what_it_bounds():
    """The limit as s/it, GFLOP/s and images/s, the kernels that gave each pass's best (G's
    input gradient into its noise, which no iteration runs, not counted), the most any mode
    could gain over reference-loop (89 ms against 44.5: 2x); nothing for a batch not timed."""
    iteration = flops.iteration_flops(make_config("dcgan64", {}), 64)
    records = [
        {**_record(mode, "float32", median), "flops_per_iter": iteration, "limit_s": 44.5e-3}
        for mode, median in (("reference-loop", 0.089), ("torch-eager", 0.06))
    ]
    peak = _peak_with_passes()
    line = report.limit_line({"records": records}, peak)
    rate = iteration / 44.5e-3 / 1e9
    assert f"Limit, float32: 0.0445 s/it ({rate:.0f} GFLOP/s, {64 / 44.5e-3:.1f} images/s)" in line
    assert "(the best from torch in 19 passes, jax in 10 passes)" in line and "2.00× reference-loop" in line
    assert report.limit_line({"records": records}, {**peak, "batch_size": 128}) == ""  # nothing timed there


def test_a_run_recorded_before_the_limit_was_per_pass_names_its_limit_and_who_beat_it(tmp_path):
    """An earlier run's limit was the iteration's FLOPs at the largest convolution's forward
    rate: read back, its records keep it as forward_limit_s (not limit_s, which the summary's
    share of the limit reads), and its line says it is not a bound and which modes beat it."""
    recorded = {
        "peaks": [{"preset": "dcgan64", "batch_size": 64, "precision": "fp32", "layer": "convt2"}],
        "records": [
            {**_record(mode, "fp32", median), "flops_per_iter": 100e9, "limit_s": 2.0}
            for mode, median in (("reference-loop", 3.0), ("torch-eager", 1.8), ("jax-jit", 1.9))
        ],
    }
    (tmp_path / "run.json").write_text(json.dumps(recorded))
    results = report.read_json(tmp_path / "run.json")
    assert all("limit_s" not in r and r["forward_limit_s"] == 2.0 for r in results["records"])
    line = report.limit_line(results, results["peaks"][0])
    assert "as this run recorded it" in line and "50 GFLOP/s: 2.000 s/it" in line
    assert "Not a bound" in line and line.endswith("torch-eager, jax-jit ran faster than it here.")
    assert report.summary("dcgan64", 64, results["records"])["limit_fraction"] is None
    assert report.pass_lines(results, results["peaks"][0]) == []


def test_the_report_says_in_which_passes_each_mode_loses_its_time():
    """Each mode's seconds per pass in its own kernels (Mode.kernels) against the best of that
    pass, its convolutions' total and the rest of its step: torch-eager (torch's kernels) loses
    only in the weight gradients (15 ms against 7.5), jax-jit (jax's) in the forwards and input
    gradients; the rest is the median less the convolutions."""
    peak = _peak_with_passes()
    records = [_record("torch-eager", "float32", 0.06), _record("jax-jit", "float32", 0.07)]
    lines = report.pass_lines({"records": records}, peak)
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[4:]}
    assert table["the limit"] == ["best of each pass", "0.0200", "0.0170", "0.0075", "0.0445", "–"]
    assert table["torch-eager"][1:] == ["0.0200 (+0.0000)", "0.0170 (+0.0000)", "0.0150 (+0.0075)", "0.0520", "+0.0080"]
    assert table["jax-jit"][1:] == ["0.0400 (+0.0200)", "0.0340 (+0.0170)", "0.0075 (+0.0000)", "0.0815", "−0.0115"]
    assert list(table) == ["the limit", "torch-eager", "jax-jit"]  # fastest first


def test_scaling_names_where_throughput_stops_gaining_and_the_memory_per_image():
    batches = [16, 32, 64, 128, 256]
    speed = [100.0, 180.0, 250.0, 270.0, 272.0]  # within 10% of the best (272) from 64 on
    points = [
        {"mode": "jax-jit", "preset": "svhn32", "status": "ok", "batch_size": b, "images_per_s": v,
         "peak_mem_bytes": 900 * 2**20 + b * 3 * 2**20}
        for b, v in zip(batches, speed)
    ]  # fmt: skip
    found = scaling.series([*reversed(points), {**points[0], "mode": "keras-jax", "status": "failed"}])
    assert list(found) == [("jax-jit", "svhn32")] and [r["batch_size"] for r in found["jax-jit", "svhn32"]] == batches
    assert scaling.stops_gaining(points) == 64
    per_image, fixed = scaling.memory_line(points)
    assert per_image == pytest.approx(3 * 2**20) and fixed == pytest.approx(900 * 2**20)
    assert scaling.memory_line(points[:1]) is None
    two = {**points[2], "devices": 2, "images_per_s": 300.0}  # twice the work in 1.67x the time
    assert scaling.series([*points, two])["jax-jit", "svhn32"] == points  # the batch sweep is one device's
    (found,) = scaling.efficiencies([*points, two])
    assert found["one_device"] == 250.0 and found["efficiency"] == pytest.approx(300 / (2 * 250))


def test_bench_rejects_an_unknown_mode_by_name():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--modes", "torch-fast"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2 and "torch-fast" in out.stderr and "torch-eager" in out.stderr


def _bench_args(*argv: str):
    """`dcgan bench`'s arguments as the run reads them, parsed and resolved: nothing is timed."""
    import argparse

    from benchmarks.cli import add_arguments, resolve

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve(parser.parse_args(argv))


def test_a_bare_bench_is_the_short_run_and_full_the_grid():
    """A bare run: mnist28, batch 64, float32, every mode but torch-compile-max-autotune, 10
    blocks. --full: both presets, both batch sizes, every precision and mode, 20 blocks. A flag
    given overrides either."""
    bare = _bench_args()
    assert (bare.preset, bare.batch_size, bare.precision, bare.repeats) == (["mnist28"], [64], ["float32"], 10)
    assert bare.modes == [m for m in MODES if m != "torch-compile-max-autotune"]
    full = _bench_args("--full")
    assert (full.preset, full.batch_size, full.repeats) == (["dcgan64", "mnist28"], [64, 128], 20)
    assert full.precision == ["float32", "tf32", "bf16"] and full.modes == list(MODES)
    mixed = _bench_args("--full", "--preset", "svhn32", "--repeats", "3")
    assert (mixed.preset, mixed.repeats, mixed.batch_size, mixed.modes) == (["svhn32"], 3, [64, 128], list(MODES))
    short = _bench_args("--batch-size", "32", "--modes", "jax-jit")
    assert (short.batch_size, short.modes, short.preset, short.repeats) == ([32], ["jax-jit"], ["mnist28"], 10)


def test_bench_takes_the_trainers_precision_names_and_fp32_with_a_note(capsys):
    """The names of common.precision.TRAINING_PRECISIONS but float64; the old "fp32" still
    works, as float32, with one line on stderr."""
    from common.precision import TRAINING_PRECISIONS

    assert set(PRECISIONS) == set(TRAINING_PRECISIONS) - {"float64"}
    assert _bench_args("--precision", "bf16", "float32").precision == ["bf16", "float32"]
    assert capsys.readouterr().err == ""
    assert _bench_args("--precision", "fp32", "bf16").precision == ["float32", "bf16"]
    assert capsys.readouterr().err == "dcgan bench: --precision fp32 is now spelled float32\n"
    with pytest.raises(SystemExit):
        _bench_args("--precision", "float64")


def test_the_committed_run_recorded_as_fp32_reads_as_float32():
    """benchmarks/results/ holds a run recorded when the benchmark called float32 "fp32": read
    back, every precision is float32, the figures are the recorded ones, and the committed
    Markdown is its report."""
    path = ROOT / "benchmarks" / "results" / "cpu-dcgan64-b64.json"
    recorded, results = json.loads(path.read_text()), report.read_json(path)
    assert "fp32" in json.dumps(recorded) and "fp32" not in json.dumps(results)
    assert {r["precision"] for r in results["records"] if r["status"] == "ok"} == {"float32"}
    assert [r.get("median_s") for r in results["records"]] == [r.get("median_s") for r in recorded["records"]]
    assert report.markdown(results) == path.with_suffix(".md").read_text()


SMOKE_MODES = [
    "reference-loop",
    "torch-eager",
    "torch-compile-reduce-overhead",
    "jax-jit",
    "keras-tensorflow",
    "keras-tensorflow-xla",
    "keras-jax",
    "keras-torch",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The benchmark on mnist28 at batch 4, two timed blocks per mode, float32 and tf32 (which
    a CPU skips, with its reason). bf16 is left to tests/test_precision.py and the skip rules'
    own test: on a CPU with bfloat16 instructions it would double the workers."""
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--preset",
        "mnist28",
        "--batch-size",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--gemm-size",
        "128",
        "--modes",
        *SMOKE_MODES,
        "--precision",
        "float32",
        "tf32",
        "--json",
        str(out / "bench.json"),
        "--markdown",
        str(out / "bench.md"),
        "--plot",
        str(out / "bench.png"),
    ]
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
    assert {r["precision"] for r in ok} == {"float32"}


def test_smoke_lists_what_it_skipped_and_why(smoke):
    results, _ = smoke
    skipped = {(r["mode"], r["precision"]): r["reason"] for r in results["records"] if r["status"] == "skipped"}
    assert all("NVIDIA" in skipped[(m, "tf32")] for m in SMOKE_MODES)
    assert "CUDA graphs" in skipped[("torch-compile-reduce-overhead", "float32")]


def test_smoke_records_the_environment_and_the_peak(smoke):
    results, _ = smoke
    env = results["environment"]
    assert env["cpu"]["usable_cpus"] >= 1 and env["versions"]["torch"] and env["commit"]
    peaks = {p["precision"]: p for p in results["peaks"]}
    assert set(peaks) == {"float32"}  # only where a mode runs: not tf32, which no CPU has
    for p in peaks.values():
        assert p["machine_flops_per_s"] == max(p["conv_flops_per_s"], p["gemm_flops_per_s"]) > 1e8
        assert {f["framework"] for f in p["by_framework"]} == {"torch", "jax", "tensorflow"}


def test_smoke_measures_the_limit_on_the_kernels_of_the_modes_it_times(smoke):
    """Every pass of every convolution, timed in the kernels of each mode that ran (and no
    other), gives the limit each float32 record carries: the best of each pass, weighted."""
    from benchmarks.layers import PASSES, as_times, conv_layers, limit, pass_counts

    results, _ = smoke
    (peak,) = results["peaks"]
    ok = [r for r in results["records"] if r["status"] == "ok"]
    assert set(peak["passes"]) == {MODES[r["mode"]].kernels for r in ok}
    expected = {(layer.name, p) for layer in conv_layers("mnist28", 4) for p in PASSES}
    for rows in peak["passes"].values():
        assert set(as_times(rows)) == expected and all(t > 0 for t in as_times(rows).values())
    found = limit({k: as_times(rows) for k, rows in peak["passes"].items()}, pass_counts(make_config("mnist28", {})))
    assert peak["limit_s"] == pytest.approx(found["limit_s"]) and peak["limit_by_pass"] == pytest.approx(
        found["by_pass"]
    )
    assert all(r["limit_s"] == peak["limit_s"] for r in ok)


def test_smoke_writes_a_table_and_a_chart(smoke):
    results, out = smoke
    table = (out / "bench.md").read_text()
    assert "| keras-jax | float32 |" in table and "| keras-jax | tf32 |" not in table
    assert "Skipped: tf32 (all modes): TF32" in table and "| keras-jax | keras-jax |" in table
    assert "The fastest float32 mode is " in table and "| met |" not in table
    assert "Limit, float32: " in table and "| the limit | best of each pass |" in table
    assert "| keras-tensorflow-xla | TensorFlow, XLA |" in table
    from PIL import Image

    with Image.open(out / "bench.png") as image:
        assert image.size[0] > 500 and np.asarray(image.convert("L")).std() > 10  # drawn, not blank


def test_workers_compile_from_an_empty_cache_of_their_own(tmp_path, monkeypatch):
    """compile_s is a cold compilation: every worker the runner starts gets an Inductor cache
    directory of its own that is empty when it starts, and no JAX cache the caller set (the
    test session sets one) reaches it."""
    from benchmarks import runner

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "shared"))
    started = []

    class Started:  # stands in for the worker process: records what it would have been given
        def __init__(self, args, env, **kwargs):
            cache = Path(env["TORCHINDUCTOR_CACHE_DIR"])
            started.append({"env": env, "cache": cache, "empty": cache.is_dir() and not any(cache.iterdir())})
            (cache / "fxgraph").mkdir()  # what a worker's compilation would leave behind

    monkeypatch.setattr(runner.subprocess, "Popen", Started)
    for mode in ("torch-compile", "torch-eager", "torch-compile"):
        runner.Worker({"mode": mode, "precision": "float32", "device": "cpu"}, tmp_path)
    assert len(started) == 3 and all(s["empty"] for s in started)
    assert len({s["cache"] for s in started}) == 3  # a fresh directory each, even for the same mode
    for s in started:
        assert "JAX_COMPILATION_CACHE_DIR" not in s["env"]
        assert s["env"]["CUDA_VISIBLE_DEVICES"] == "" and s["env"]["JAX_PLATFORMS"] == "cpu"


def test_layer_timings_cover_every_convolution_and_pass():
    """benchmarks.layers (torch only, to stay quick): one row per pass of every convolution
    of the preset, each a positive time, and a total."""
    from benchmarks.layers import PASSES, conv_layers

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.layers",
            "--preset",
            "mnist28",
            "--batch-size",
            "2",
            "--repeats",
            "1",
            "--frameworks",
            "torch",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| conv")]
    expected = [(layer.name, p) for layer in conv_layers("mnist28", 2) for p in PASSES]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == expected
    assert all(float(r[2]) > 0 for r in rows) and "**all**" in out.stdout


def test_profile_lists_the_ops_of_a_torch_mode():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.profile",
            "--mode",
            "torch-eager",
            "--preset",
            "mnist28",
            "--batch-size",
            "2",
            "--steps",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "convolution" in out.stdout and "Self CPU" in out.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", "--mode", "jax-jit"], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "jax-jit" in refused.stderr and "torch-eager" in refused.stderr


def test_a_process_per_device_mode_is_timed_through_its_first_process(tmp_path):
    """torch at --devices 2: the worker runs as two processes under torchrun, process 0 answers
    the runner, the other does as it is told, and the memory is the two processes' sum."""
    command = [sys.executable, "-m", "benchmarks", "--preset", "mnist28", "--batch-size", "2", "--devices", "2",
               "--modes", "torch-eager", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--no-peak",
               "--json", str(tmp_path / "bench.json")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = json.loads((tmp_path / "bench.json").read_text())["records"]
    assert (record["status"], record["devices"], record["batch_size"]) == ("ok", 2, 2), record
    assert record["images_per_s"] == pytest.approx(4 / record["median_s"]) and record["finite"]
    assert record["peak_mem_kind"] == "peak RSS summed over the 2 worker processes"
