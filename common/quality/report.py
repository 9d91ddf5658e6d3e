"""`dcgan eval`'s output: the scores of a checkpoint printed beside their reference points
(and written as JSON), or where the trained feature network went."""

from __future__ import annotations

import json
from pathlib import Path

from common.quality.features import LABEL, train_features

COLUMNS = (  # (title, format of one row's scores)
    ("FD [95% interval]", lambda s: f"{s['fd']:.2f} [{s['fd_low']:.2f}, {s['fd_high']:.2f}]"),
    ("KID", lambda s: f"{s['kid']:.3f} ± {s['kid_std']:.3f}"),
    ("precision", lambda s: f"{s['precision']:.3f}"),
    ("recall", lambda s: f"{s['recall']:.3f}"),
    ("density", lambda s: f"{s['density']:.3f}"),
    ("coverage", lambda s: f"{s['coverage']:.3f}"),
    ("classes", lambda s: f"{s['classes_covered']}/10 (KL {s['class_kl']:.3f})" if "classes_covered" in s else "-"),
)


GENERATOR_ROWS = {"ema": "moving average", "raw": "G"}  # which generator was scored, in the checkpoint's row


def table(found: dict) -> str:
    rows = [
        (f"checkpoint (step {found['step']}, {found['backend']}, {GENERATOR_ROWS[found['generator']]})", found),
        ("real vs real (floor)", found["reference"]["real_vs_real"]),
        ("fresh generator", found["reference"]["fresh_generator"]),
    ]
    cells = [[title for title, _ in COLUMNS]] + [[fmt(scores) for _, fmt in COLUMNS] for _, scores in rows]
    names = [""] + [name for name, _ in rows]
    widths = [max(len(n) for n in names)] + [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join([name.ljust(widths[0])] + [c.rjust(w) for c, w in zip(row, widths[1:])])
        for name, row in zip(names, cells)
    ]
    if found["features"] == LABEL:
        caveat = (
            "These are not FIDs: the features are the suite's own classifier's, not Inception's, so the numbers "
            "compare only with each other."
        )
    else:
        caveat = (
            "FID compares with published figures only with the standard Inception weights, the same real images "
            "and the same n."
        )
    return "\n".join(
        [
            f"{found['features']}: {found['n']} samples of {found['generator_name']} against {found['real']} "
            f"(network weights: {found['feature_weights']})",
            *lines,
            caveat,
        ]
    )


def train_feature_network(seed: int, out: Path | None, epochs: int, progress: bool) -> None:
    """`dcgan eval train-features`: trains the feature network and says where it went."""
    print(f"wrote {train_features(seed, out, epochs, progress)}")


def score_checkpoint(
    checkpoint: Path,
    backend: str | None,
    n: int,
    seed: int,
    weights: Path | None,
    features: str,
    json_file: Path | None = None,
    progress: bool = True,
    generator: str | None = None,
) -> None:
    """`dcgan eval --checkpoint`: the checkpoint's scores as a table beside the reference
    points (common.quality.evaluate.evaluate_checkpoint), and as JSON in `json_file`."""
    from common.quality.evaluate import evaluate_checkpoint

    found = evaluate_checkpoint(checkpoint, backend, n, seed, weights, features, progress=progress, generator=generator)
    print(table(found))
    if json_file is not None:
        json_file.write_text(json.dumps(found, indent=1) + "\n")
