"""The time-to-quality study's arithmetic: training time excludes the scoring, a threshold is
met at the first score at or below it, and runs from another CPU are refused or replaced."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import time_to_quality as ttq


def metrics(*scores: tuple[int, float, float, float, float]) -> list[dict]:
    """A run's metrics.jsonl: unscored iterations between scored ones (step, time, fd, fd_raw, eval_s)."""
    records = []
    for step, time, fd, fd_raw, eval_s in scores:
        records.append({"step": step - 1, "time": time - 0.5})
        records.append({"step": step, "time": time, "fd": fd, "fd_raw": fd_raw, "eval_s": eval_s})
    return records


def test_training_time_at_a_score_is_the_run_time_less_the_earlier_scoring():
    points = ttq.scored(metrics((250, 40.0, 400.0, 380.0, 30.0), (500, 110.0, 250.0, 260.0, 29.0),
                                (750, 179.0, 180.0, 190.0, 31.0)))  # fmt: skip
    assert [p["train_s"] for p in points] == [40.0, 80.0, 120.0]  # each score's own seconds come after its time
    assert [(p["step"], p["fd"], p["fd_raw"]) for p in points] == [(250, 400, 380), (500, 250, 260), (750, 180, 190)]


def test_a_run_without_an_average_scores_g_in_both_columns():
    points = ttq.scored([{"step": 250, "time": 10.0, "fd": 300.0, "eval_s": 5.0}])
    assert points == [{"step": 250, "train_s": 10.0, "fd": 300.0, "fd_raw": 300.0}]


def test_a_threshold_is_met_at_the_first_score_at_or_below_it():
    points = ttq.scored(metrics((250, 40.0, 400.0, 380.0, 30.0), (500, 110.0, 200.0, 260.0, 29.0),
                                (750, 179.0, 210.0, 150.0, 31.0)))  # fmt: skip
    assert ttq.first_below(points, 200, "fd")["step"] == 500  # met exactly, then lost: the first time counts
    assert ttq.first_below(points, 200, "fd_raw")["step"] == 750
    assert ttq.first_below(points, 100, "fd") is None


def test_the_report_tables_minutes_to_each_threshold_for_the_average_and_g(tmp_path, monkeypatch):
    monkeypatch.setattr(ttq, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ttq, "RESULTS", tmp_path)
    monkeypatch.setattr(ttq, "RECORDS", tmp_path / "time-to-quality.json")
    (tmp_path / "runs" / "torch").mkdir(parents=True)
    (tmp_path / "runs" / "machine.json").write_text(
        json.dumps({"cpu": {"model": "Test CPU", "usable_cpus": 2, "flags": ["avx2"]}, "commit": "abc", "date": "d"})
    )
    lines = metrics((250, 60.0, 400.0, 280.0, 30.0), (500, 150.0, 190.0, 240.0, 30.0))
    (tmp_path / "runs" / "torch" / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)))
    ttq.report(argparse.Namespace())
    text = (tmp_path / "time-to-quality.md").read_text()
    # FD ≤ 300: the average at 500 (2.0 min of training), G at 250 (1.0); ≤ 200: the average only; ≤ 150: neither
    row = "| torch | 2.0 (500) / 1.0 (250) | 2.0 (500) / – | – / – | – / – | 190.0 / 240.0 at 500 in 2.0 |"
    assert row in text
    assert "Test CPU" in text and (tmp_path / "time-to-quality.png").stat().st_size > 0
    # the recorded results report again without the runs
    (tmp_path / "runs" / "machine.json").unlink()
    ttq.report(argparse.Namespace())
    assert row in (tmp_path / "time-to-quality.md").read_text()
    # a new study, on another machine, replaces them: its jax run is not tabled beside the old torch run
    (tmp_path / "runs" / "torch" / "metrics.jsonl").unlink()
    (tmp_path / "runs" / "jax").mkdir()
    (tmp_path / "runs" / "jax" / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)))
    (tmp_path / "runs" / "machine.json").write_text(
        json.dumps({"cpu": {"model": "Other CPU", "usable_cpus": 2, "flags": ["avx2"]}, "commit": "def", "date": "e"})
    )
    ttq.report(argparse.Namespace())
    text = (tmp_path / "time-to-quality.md").read_text()
    assert "| jax |" in text and "| torch |" not in text and "Other CPU" in text
    assert list(json.loads((tmp_path / "time-to-quality.json").read_text())["runs"]) == ["jax"]


def test_runs_continued_on_another_cpu_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ttq, "RUNS", tmp_path)
    machine = ttq.same_machine()  # the first run records this machine, the next ones match it
    assert ttq.same_machine() == machine
    machine["cpu"]["model"] = "Another CPU"
    (tmp_path / "machine.json").write_text(json.dumps(machine))
    with pytest.raises(SystemExit, match="were made on Another CPU .*times from two machines do not compare"):
        ttq.same_machine()


def test_a_bf16_run_is_set_against_its_float32_run_at_the_same_iterations(tmp_path, monkeypatch):
    monkeypatch.setattr(ttq, "RUNS", tmp_path)

    def points(*fds: float, seconds: float) -> list[dict]:
        return [{"step": 250 * i, "train_s": seconds * i, "fd": fd, "fd_raw": fd} for i, fd in enumerate(fds, 1)]

    runs = {"torch-bf16": points(400.0, 260.0, seconds=30.0), "jax": points(390.0, seconds=60.0),
            "torch": points(410.0, 250.0, 200.0, seconds=60.0)}  # fmt: skip
    assert sorted(runs, key=ttq.order) == ["torch", "jax", "torch-bf16"]
    assert ttq.run_name("torch", "bf16") == "torch-bf16" and ttq.run_name("jax", "float32") == "jax"
    assert "--precision" in (command := ttq.train_command("torch", 1000, "bf16")) and command[-1].endswith("torch-bf16")
    (tmp_path / "torch-bf16").mkdir()
    (tmp_path / "torch-bf16" / "run.json").write_text("{}")
    assert ttq.train_command("torch", 1000, "bf16")[-1] == "--resume"  # a run begun goes on
    (line,) = ttq.against_float32(runs, spread=lambda step: 20.0)  # jax has no bf16 run: no line
    assert line == ("- torch: bf16 / float32 at each scored iteration: 250: 400.0 / 410.0, 500: 260.0 / 250.0; "
                    "at 500, 1.0 against 2.0 minutes of training; bf16 − float32 at 500: +10.0 for the average, "
                    "+10.0 for G, within the 20.0 by which G's FD differs between seeds there.")  # fmt: skip
    runs["torch-bf16"][-1]["fd_raw"] = 280.0  # G 30 worse than float32's: more than seeds differ
    assert ttq.against_float32(runs, spread=lambda step: 20.0)[0].endswith(
        "+30.0 for G, beyond the 20.0 by which G's FD differs between seeds there."
    )
    assert ttq.against_float32(runs, spread=lambda step: None)[0].endswith("no seed spread to set it against.")
