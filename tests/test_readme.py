"""The README stays short, true to the committed results, and its links resolve; the headline
table it shares with the site's home page reads each result the way it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import summary

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_is_at_most_150_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs on a page of the site (docs/)"


def test_readme_headline_table_is_the_committed_results():
    text = README.read_text()
    assert summary.readme_block(text, summary.markdown()) == text, (
        "README.md's headline table is stale against benchmarks/results/: run `python -m benchmarks.summary --readme`"
    )


def test_readme_links_resolve():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.exists(), f"README.md links to {target}, which does not exist"


def test_readme_block_needs_its_markers():
    with pytest.raises(ValueError, match="markers"):
        summary.readme_block("no table here", "| a |")


def test_code_lines_leave_out_docstrings_comments_and_blank_lines():
    source = '''"""Module docstring,
on two lines."""

def f(x):  # a trailing comment keeps its line
    """A docstring."""
    # a comment alone
    y = (x +
         1)
    return "not a docstring"
'''
    # def f, y = (x +, 1), return
    assert summary.source_lines(source) == 4


def _results(tmp_path: Path, comparisons: list[dict], runs: list[dict]) -> tuple[Path, Path]:
    env = {"commit": "0" * 40, "cpu": {"model": "Test CPU"}, "date": "2026-01-01"}
    parity = tmp_path / "parity.json"
    parity.write_text(json.dumps({"environment": env, "comparisons": comparisons}))
    quality = tmp_path / "quality" / "quality.json"
    quality.parent.mkdir()
    quality.write_text(json.dumps(runs))
    return parity, quality


def test_headline_rows_read_parity_and_quality_as_documented(tmp_path):
    def comparison(pair, precision, diff, result="pass"):
        return {"pair": pair, "precision": precision, "diff": diff, "result": result}

    parity, quality = _results(
        tmp_path,
        [
            comparison(["torch", "jax"], "float64", 2e-14),
            comparison(["torch", "keras-torch"], "float64", 5e-15),
            comparison(["jax", "keras-jax"], "float32", 3e-6),  # float32: not the float64 column
            comparison(["keras-jax", "keras-tensorflow"], "float64", 9.0, "fail"),  # a failure is not hidden
        ],
        [
            {"backend": "torch", "seed": 0, "fd": 100.0},
            {"backend": "torch", "seed": 1, "fd": 110.0},
            {"backend": "jax", "seed": 0, "fd": 90.0},
        ],
    )
    time = tmp_path / "quality" / "time-to-quality.json"
    point = {"fd_raw": 0.0}  # G's own FD does not count: the minutes are the average's
    time.write_text(json.dumps({"runs": {
        "torch": [{**point, "step": 250, "train_s": 60.0, "fd": 300.0}, {**point, "step": 500, "train_s": 150.0,
                                                                          "fd": summary.HEADLINE_FD}],
        "jax": [{**point, "step": 250, "train_s": 70.0, "fd": summary.HEADLINE_FD + 1}]}}))  # fmt: skip
    rows = {r.backend: r for r in summary.rows(parity=parity, quality=quality, time=time)}
    assert rows["torch"].minutes == 2.5 and rows["jax"].minutes is None and rows["keras-torch"].minutes is None
    assert rows["torch"].parity_float64 == 2e-14
    assert rows["jax"].parity_float64 == 2e-14
    assert rows["keras-torch"].parity_float64 == 5e-15
    assert rows["keras-jax"].parity_float64 == rows["keras-tensorflow"].parity_float64 == 9.0
    assert rows["keras-tensorflow"].fd == []
    assert rows["torch"].fd == [100.0, 110.0] and rows["keras-tensorflow"].fd == []
    assert summary.fd_cell(rows["torch"].fd) == "105.0 ± 7.1 (2)"
    assert summary.fd_cell(rows["jax"].fd) == "90.0 (1)"
    assert rows["keras-torch"].engine == "none" and rows["torch"].engine == "DistributedDataParallel"
    assert rows["keras-jax"].lines == rows["keras-torch"].lines  # one package serves Keras's three backends
