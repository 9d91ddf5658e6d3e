"""Runs the benchmark: workers per mode, interleaved timing, the machine's peak, the records.

For each (preset, batch size, precision), every runnable mode gets a fresh worker process
(benchmarks/worker.py). The workers start and warm up one at a time, so each compile time
is measured alone; then, with all of them warm, the runner asks each in turn for one block
of iterations, `repeats` times round, rotating who goes first. Interleaving spreads any
drift of the machine (clock, other load) over every mode alike instead of charging it to
whichever ran last. Only one worker computes at any moment; the others wait on a pipe.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.environment import environment
from benchmarks.flops import iteration_flops, largest_layer
from benchmarks.layers import KERNELS, as_times, limit, pass_counts
from benchmarks.modes import MODES, Mode, skip_reason
from benchmarks.peak import FRAMEWORKS, vendor_peak
from common.launch import python_m
from common.presets import make_config

MIN_BLOCK_S = 0.05  # a timed block runs enough iterations to last this long (one, on a CPU)


@dataclass
class Settings:
    presets: list[str]
    modes: list[Mode]
    precisions: list[str]
    batch_sizes: list[int]
    device: str
    repeats: int = 20
    warmup: int = 3
    interleave: bool = True
    peak: bool = True
    gemm_size: int = 4096
    devices: list[int] = field(default_factory=lambda: [1])  # data-parallel widths; batch sizes are per device
    log: callable = field(default=lambda line: print(line, file=sys.stderr, flush=True))


def worker_env(device: str, compile_cache: Path) -> dict[str, str]:
    """The worker's environment: on "cpu", no framework may see a GPU; compilers start from an
    empty cache of the worker's own (`compile_cache`), so `compile_s` is a cold compilation,
    not a read of what an earlier run left in Inductor's or JAX's on-disk cache."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TORCHINDUCTOR_CACHE_DIR=str(compile_cache))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    else:
        # The workers share the GPU and stay alive until every mode is timed; JAX's default,
        # taking 75% of the GPU's memory when it starts, would leave the workers started after
        # jax-jit (keras-jax, keras-torch) too little. JAX allocates as it needs instead.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _launcher(job: dict) -> list[str]:
    """How `python -m` starts the worker: itself, or torchrun where the mode's data
    parallelism runs a process per device (torch's DDP), whose process 0 answers."""
    if "mode" not in job:
        return []
    return python_m(MODES[job["mode"]].backend, job.get("devices", 1))


class Worker:
    """One worker process and its JSON-lines pipe."""

    def __init__(self, job: dict, log_dir: Path):
        self.job = job
        self.stderr_path = log_dir / f"{job.get('mode', job.get('framework'))}-{job['precision']}.log"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *_launcher(job), "benchmarks.worker", json.dumps(job)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=worker_env(job["device"], Path(tempfile.mkdtemp(prefix="compile-cache-", dir=log_dir))),
                cwd=Path(__file__).resolve().parent.parent,
            )

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if line:
            return json.loads(line)
        self.process.wait()
        tail = self.stderr_path.read_text().strip().splitlines()[-1:] or ["no output"]
        return {"status": "error", "reason": f"the worker exited with code {self.process.returncode}: {tail[0]}"}

    def send(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def measure_peaks(
    settings: Settings, preset: str, batch_size: int, precision: str, log_dir: Path, kernels: set[str]
) -> dict:
    """The machine's best GEMM and convolution FLOP/s at `precision`, over the frameworks, and
    the limit (benchmarks/layers.py) from every convolution's passes timed in `kernels`: by
    kernel set, the seconds of each pass of each layer (`passes`); the best of each pass,
    weighted by how often an iteration runs it (`limit_s`, and `limit_by_pass`)."""
    found = []
    for framework in FRAMEWORKS:
        job = {
            "kind": "peak",
            "framework": framework,
            "preset": preset,
            "batch_size": batch_size,
            "precision": precision,
            "device": settings.device,
            "gemm_size": settings.gemm_size,
            "kernels": sorted(k for k in kernels if KERNELS[k][0] == framework),
        }
        worker = Worker(job, log_dir)
        result = worker.receive()
        worker.close()
        if result.get("status") == "done":
            found.append(result)
        else:
            settings.log(f"  peak in {framework}: {result.get('reason')}")
    if not found:
        return {}
    best_conv = max(found, key=lambda r: r["conv_flops_per_s"])
    best_gemm = max(found, key=lambda r: r["gemm_flops_per_s"])
    passes = {k: rows for r in found for k, rows in r.pop("passes").items()}
    counts = pass_counts(make_config(preset, {"optim.batch_size": batch_size}))
    bound = limit({k: as_times(rows) for k, rows in passes.items()}, counts) if passes else None
    return {
        "conv_flops_per_s": best_conv["conv_flops_per_s"],
        "conv_framework": best_conv["framework"],
        "conv_layer": best_conv["layer"],
        "gemm_flops_per_s": best_gemm["gemm_flops_per_s"],
        "gemm_framework": best_gemm["framework"],
        "gemm_size": best_gemm["gemm_size"],
        "machine_flops_per_s": max(best_conv["conv_flops_per_s"], best_gemm["gemm_flops_per_s"]),
        "by_framework": found,
        "passes": passes,
        "limit_s": bound["limit_s"] if bound else None,
        "limit_by_pass": bound["by_pass"] if bound else None,
    }


def time_group(
    settings: Settings,
    preset: str,
    batch_size: int,
    precision: str,
    cpu_flags: set[str],
    log_dir: Path,
    devices: int = 1,
) -> list[dict]:
    """Records of every mode at one (preset, batch size per device, precision, devices)."""
    base = {
        "preset": preset,
        "batch_size": batch_size,
        "devices": devices,
        "precision": precision,
        "device": settings.device,
    }
    records, workers = [], {}

    def finish(mode: Mode) -> None:
        worker = workers.pop(mode.name)
        done = worker.send({"do": "finish"})
        worker.close()
        record = records_by_mode[mode.name]
        record.update(
            peak_mem_bytes=done.get("peak_mem_bytes"),
            peak_mem_kind=done.get("peak_mem_kind"),
            final_metrics=done.get("metrics"),
            finite=done.get("finite"),
        )

    records_by_mode: dict[str, dict] = {}
    for mode in settings.modes:
        record = {"mode": mode.name, **base}
        records.append(record)
        reason = skip_reason(mode, precision, settings.device, cpu_flags)
        if reason:
            record.update(status="skipped", reason=reason)
            continue
        worker = Worker({"mode": mode.name, **base, "warmup": settings.warmup}, log_dir)
        ready = worker.receive()
        if ready.get("status") != "ready":
            worker.close()
            record.update(status=ready.get("status", "error"), reason=ready.get("reason"))
            settings.log(f"  {mode.name} {precision}: {record['status']}: {record['reason']}")
            continue
        warm = float(np.median(ready["warmup_s"])) if ready["warmup_s"] else ready["compile_s"]
        record.update(
            status="ok",
            compile_s=ready["compile_s"],
            device_name=ready["device_name"],
            times=[],
            inner=max(1, math.ceil(MIN_BLOCK_S / max(warm, 1e-9))),
        )
        records_by_mode[mode.name] = record
        workers[mode.name] = worker
        settings.log(f"  {mode.name} {precision}: first call {ready['compile_s']:.2f} s, warm {warm:.3f} s/it")
        if not settings.interleave:
            _timed_rounds(settings, {mode.name: worker}, records_by_mode)
            finish(mode)
    if settings.interleave:
        _timed_rounds(settings, workers, records_by_mode)
        for name in list(workers):
            finish(MODES[name])
    return records


def _timed_rounds(settings: Settings, workers: dict[str, Worker], records_by_mode: dict[str, dict]) -> None:
    names = list(workers)
    for round_ in range(settings.repeats):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            reply = workers[name].send({"do": "run", "blocks": 1, "inner": records_by_mode[name]["inner"]})
            if "times" not in reply:
                raise RuntimeError(f"{name} stopped while timing: {reply.get('reason')}")
            records_by_mode[name]["times"].extend(reply["times"])


_ENVIRONMENT: dict = {}


def environment_cache() -> dict:
    if not _ENVIRONMENT:
        _ENVIRONMENT.update(environment())
    return _ENVIRONMENT


def summarize(record: dict, flops: int, peaks: dict, device_peak: float | None) -> None:
    """Adds the statistics to an "ok" record: median and IQR of s/iteration, rates, efficiency."""
    times = np.asarray(record.pop("times"))
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    record.update(
        repeats=len(times),
        median_s=float(median),
        iqr_s=float(q75 - q25),
        q25_s=float(q25),
        q75_s=float(q75),
        images_per_s=record["batch_size"] * record.get("devices", 1) / median,
        flops_per_iter=flops,
        gflops_per_s=flops / median / 1e9,
    )
    peak = device_peak if device_peak else peaks.get("machine_flops_per_s")
    record["peak_flops_per_s"] = peak
    record["peak_source"] = "vendor dense peak" if device_peak else ("measured machine peak" if peak else None)
    record["peak_fraction"] = flops / median / peak if peak else None


def run(settings: Settings) -> dict:
    """Every (preset, batch size, precision, mode): the full result, environment included."""
    env = environment_cache()
    results = {
        "environment": env,
        "settings": {
            "presets": settings.presets,
            "modes": [m.name for m in settings.modes],
            "precisions": settings.precisions,
            "batch_sizes": settings.batch_sizes,
            "device": settings.device,
            "repeats": settings.repeats,
            "warmup": settings.warmup,
            "interleave": settings.interleave,
            "devices": settings.devices,
        },
        "peaks": [],
        "records": [],
    }
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-") as tmp:
        log_dir = Path(tmp)
        cpu_flags = set(env["cpu"]["flags"])
        for preset in settings.presets:
            config = make_config(preset, {})
            for batch_size in settings.batch_sizes:
                flops = iteration_flops(config, batch_size)
                limit_layer = largest_layer(config).name
                for precision in settings.precisions:
                    settings.log(f"{preset}, batch {batch_size}, {precision}: {flops / 1e9:.1f} GFLOP per iteration")
                    peaks = {}
                    runnable = [m for m in settings.modes if not skip_reason(m, precision, settings.device, cpu_flags)]
                    if settings.peak and runnable:
                        kernels = {m.kernels for m in runnable}
                        peaks = measure_peaks(settings, preset, batch_size, precision, log_dir, kernels)
                        if peaks:
                            results["peaks"].append(
                                {
                                    "preset": preset,
                                    "batch_size": batch_size,
                                    "precision": precision,
                                    "layer": limit_layer,
                                    **peaks,
                                }
                            )
                    for devices in settings.devices:
                        group = time_group(settings, preset, batch_size, precision, cpu_flags, log_dir, devices)
                        for record in group:
                            if record["status"] == "ok":
                                on_gpu = settings.device == "gpu"
                                device_peak = vendor_peak(record["device_name"], precision) if on_gpu else None
                                summarize(record, flops * devices, peaks, device_peak)
                                if peaks.get("limit_s") and devices == 1:
                                    record["limit_s"] = peaks["limit_s"]
                            results["records"].append(record)
    add_speedups(results["records"])
    return results


def add_speedups(records: list[dict]) -> None:
    """speedup_vs_reference: reference-loop's float32 median over the mode's, same preset and batch."""
    reference = {
        (r["preset"], r["batch_size"]): r["median_s"]
        for r in records
        if r["mode"] == "reference-loop" and r["status"] == "ok"
    }
    for r in records:
        if r["status"] == "ok" and r.get("devices", 1) == 1:
            ref = reference.get((r["preset"], r["batch_size"]))
            r["speedup_vs_reference"] = ref / r["median_s"] if ref else None
