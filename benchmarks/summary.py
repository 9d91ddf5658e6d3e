"""The headline table: one row per backend, every cell read from a committed result.

    python -m benchmarks.summary            # print the table
    python -m benchmarks.summary --readme   # write it into README.md, between its markers

The README and the site's home page show the same table, made here from:

- float64 parity: benchmarks/results/parity.json (docs/make_parity_report.py), the largest
  difference of any float64 check between the backend and any other;
- step times: the committed `dcgan bench` runs of dcgan64 at batch 64, on a CPU with
  bfloat16 instructions (benchmarks/results/cpu-epyc-dcgan64-b64.json, the latest) and on a
  GPU (benchmarks/results/gpu/), each backend's best float32 and bf16 mode as a multiple of
  that run's fastest float32 mode's time;
- FD: benchmarks/results/quality/quality.json (`python -m benchmarks.quality`), mean ± sd
  over the seeds each backend was trained with;
- time to quality: benchmarks/results/quality/time-to-quality.json (`python -m
  benchmarks.time_to_quality`), minutes of training until G's moving average first scored
  FD ≤ HEADLINE_FD, every backend's run made on one machine in one session;
- lines of framework-specific code: the backend's `*_impl` package as committed, counted
  without blank lines, comments and docstrings (each build's Fashion-MNIST feature network
  and the Inception-v3 loader in pytorch_impl are `dcgan eval`'s and are left out);
- the data-parallel engine: common.launch.DATA_PARALLEL.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import tokenize
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import read_json, summary
from benchmarks.time_to_quality import first_below
from common.backends import BACKENDS
from common.launch import DATA_PARALLEL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARITY = RESULTS / "parity.json"
# The committed benchmark runs the table reads, by the column label of their device.
BENCHES = {"CPU": RESULTS / "cpu-epyc-dcgan64-b64.json", "H200": RESULTS / "gpu" / "gpu-dcgan64-b64.json"}
QUALITY = RESULTS / "quality" / "quality.json"
TIME = RESULTS / "quality" / "time-to-quality.json"
HEADLINE_FD = 200  # every backend's average reached it within the study's 2000 iterations; 150 only two
README = ROOT / "README.md"
MARKERS = ("<!-- headline table: made by `python -m benchmarks.summary --readme` -->", "<!-- end of headline table -->")

# Files of a backend's package (the package of its module in common.backends.BACKENDS) that
# are `dcgan eval`'s, not the GAN's, left out of its framework-specific lines: each build's
# feature network, and the Inception-v3 loader that serves every backend.
SHARED_FILES = {
    "pytorch_impl/features.py",
    "jax_impl/features.py",
    "keras_impl/features.py",
    "pytorch_impl/inception.py",
}


@dataclass(frozen=True)
class Row:
    backend: str
    parity_float64: float | None  # the largest float64 difference against any other backend
    # by device label: (best float32, best bf16) mode's time over the fastest float32 mode's
    # time in that run; None where the backend did not run that precision there
    speed: dict[str, tuple[float | None, float | None]]
    fd: list[float]  # final FD of each seed
    minutes: float | None  # of training until G's moving average scored FD ≤ HEADLINE_FD; None: not reached
    lines: int
    engine: str


def source_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    counted: set[int] = set()
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        layout = token.type in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        )
        docstring = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if not layout and not docstring:
            counted.update(range(token.start[0], token.end[0] + 1))
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return len(counted)


def package_lines(package: str) -> int:
    return sum(
        source_lines(path.read_text())
        for path in sorted((ROOT / package).glob("*.py"))
        if f"{package}/{path.name}" not in SHARED_FILES
    )


def engine(backend: str) -> str:
    """The engine's name: DATA_PARALLEL's description up to its first colon or comma."""
    if backend not in DATA_PARALLEL:
        return "none"
    return DATA_PARALLEL[backend].split(":")[0].split(",")[0]


def _parity(path: Path) -> dict[str, float]:
    worst: dict[str, float] = {}
    for c in json.loads(path.read_text())["comparisons"]:
        if c["precision"] != "float64":  # a failed check counts too: its difference is the worst
            continue
        for backend in c["pair"]:
            worst[backend] = max(worst.get(backend, 0.0), c["diff"])
    return worst


def speeds(bench: Path) -> dict[str, tuple[float | None, float | None]]:
    """Each backend's best float32 and bf16 times over the run's fastest float32 time."""
    run = read_json(bench)
    record = run["records"][0]
    found = summary(record["preset"], record["batch_size"], run["records"])
    if found is None:
        return {}
    fastest = found["fastest_median_s"]
    return {
        b["backend"]: (
            b["vs_fastest"],
            b["float32_median_s"] / b["bf16_speedup"] / fastest if b["bf16_speedup"] else None,
        )
        for b in found["backends"]
    }


def minutes_to(time: Path, threshold: float) -> dict[str, float]:
    """Each backend's minutes of training until its run first scored FD ≤ `threshold` (G's
    moving average); a backend whose run never did is left out."""
    if not time.exists():
        return {}
    found = {}
    for backend, points in json.loads(time.read_text())["runs"].items():
        reached = first_below(points, threshold, "fd")
        if reached is not None:
            found[backend] = reached["train_s"] / 60
    return found


def rows(
    parity: Path = PARITY, benches: dict[str, Path] = BENCHES, quality: Path = QUALITY, time: Path = TIME
) -> list[Row]:
    worst = _parity(parity)
    minutes = minutes_to(time, HEADLINE_FD)
    timed = {device: speeds(path) for device, path in benches.items()}
    fds: dict[str, list[float]] = {}
    for r in sorted(json.loads(quality.read_text()), key=lambda r: r["seed"]):
        fds.setdefault(r["backend"], []).append(r["fd"])
    return [
        Row(
            backend=backend,
            parity_float64=worst.get(backend),
            speed={device: found.get(backend, (None, None)) for device, found in timed.items()},
            fd=fds.get(backend, []),
            minutes=minutes.get(backend),
            lines=package_lines(BACKENDS[backend].split(".")[0]),
            engine=engine(backend),
        )
        for backend in BACKENDS
    ]


def fd_cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f} (1)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)})"


def _minutes(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _commit(env: dict) -> str:
    commit = env["commit"]
    return f"`{commit[:7]}`" + (" with uncommitted changes" if commit.endswith("-dirty") else "")


def _machine(env: dict) -> str:
    return env["cpu"]["model"] + (f", {', '.join(env['gpus'])}" if env.get("gpus") else ", no GPU")


def sources(parity: Path = PARITY, benches: dict[str, Path] = BENCHES, quality: Path = QUALITY) -> list[str]:
    """Where each column comes from: file, commit and machine."""
    p = json.loads(parity.read_text())["environment"]
    made = (quality.parent / "quality.md").read_text()  # "Made by `...` on DATE at commit `...`, on CPU (...)"
    q = re.search(r"at commit `([0-9a-f]+)[^`]*`, on (.+?) \(", made)
    lines = [f"float64 parity: `{_rel(parity)}`, commit {_commit(p)}, {_machine(p)};"]
    for device, path in benches.items():
        b = read_json(path)["environment"]
        lines.append(f"{device} step times: `{_rel(path)}` (dcgan64, batch 64), commit {_commit(b)}, {_machine(b)};")
    lines += [
        f"FD: `{_rel(quality)}` (mnist28 on Fashion-MNIST, 3000 iterations), commit `{q[1][:7]}`, {q[2]};",
        *time_source(TIME),
        "lines: the backend's `*_impl` package at this commit;",
        "engine: `common.launch.DATA_PARALLEL`.",
    ]
    return lines


def time_source(time: Path) -> list[str]:
    if not time.exists():
        return []
    machine = json.loads(time.read_text())["machine"]
    return [f"minutes to FD ≤ {HEADLINE_FD}: `{_rel(time)}` (the same mnist28 config, seed 0, every backend in one "
            f"session), commit {_commit(machine)}, {_machine(machine)};"]  # fmt: skip


def _rel(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT))


def markdown(found: list[Row] | None = None) -> str:
    """The table, then a paragraph naming its sources."""
    found = rows() if found is None else found
    devices = list(found[0].speed) if found else []
    # a bf16 column only for a run where some backend ran bf16
    bf16 = [d for d in devices if any(r.speed[d][1] is not None for r in found)]
    columns = [f"{d} float32 step time" for d in devices] + [f"{d} bf16 step time" for d in bf16]
    lines = [
        "| backend | float64 parity, worst difference | "
        + " | ".join(columns)
        + f" | FD, mean ± sd (seeds) | CPU minutes to FD ≤ {HEADLINE_FD} | framework-specific lines "
        "| data-parallel engine |",
        "|---|---:|" + "---:|" * len(columns) + "---|---:|---:|---|",
    ]
    for r in found:
        parity = "–" if r.parity_float64 is None else f"{r.parity_float64:.1e}"
        cells = [_times(r.speed[d][0]) for d in devices] + [_times(r.speed[d][1]) for d in bf16]
        lines.append(
            f"| {r.backend} | {parity} | " + " | ".join(cells) + f" | {fd_cell(r.fd)} | {_minutes(r.minutes)} "
            f"| {r.lines:,} | {r.engine} |"
        )
    unbf16 = [d for d in devices if d not in bf16]
    lines += [
        "",
        "Step times are one training iteration's time as a multiple of the fastest float32 mode's in the "
        "same run (lower is faster; each backend's best mode; – where that run had no such mode"
        + (f"; no bf16 on the {', '.join(unbf16)} run: no bfloat16 instructions" if unbf16 else "")
        + "). FD is measured in the suite's own Fashion-MNIST features (lower is better; not comparable "
        f"with published FIDs). Minutes to FD ≤ {HEADLINE_FD}: mnist28's training time (the scoring not counted) "
        f"until G's moving average first scored FD ≤ {HEADLINE_FD}, scored every 250 iterations; – where its run "
        "did not get there. Sources: " + " ".join(sources()),
    ]
    return "\n".join(lines)


def readme_block(text: str, table: str) -> str:
    """`text` with the table between the README's markers replaced by `table`."""
    start, end = MARKERS
    if start not in text or end not in text:
        raise ValueError(f"README.md lacks the headline table's markers {start!r} and {end!r}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the table into README.md between its markers")
    args = parser.parse_args(argv)
    table = markdown()
    if args.readme:
        README.write_text(readme_block(README.read_text(), table))
        print(f"wrote the headline table into {README}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
