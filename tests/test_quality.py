"""common/quality/: the scores' maths against closed forms and an independent implementation,
the feature network's determinism and its weight files' hashes, and the refusals.
`dcgan eval` and `train --eval-every` on every backend are in test_training.py's chains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from common import checkpoint
from common.errors import ConfigError
from common.presets import make_config
from common.quality import metrics
from common.quality.evaluate import as_fashion_mnist, check_dataset
from common.quality.features import COMMITTED, COMMITTED_SHA256, load_weights, save_weights
from common.quality.network import EARLIER_NAMES, ENTRIES


def _stats(mean, cov) -> metrics.Statistics:
    return metrics.Statistics(np.asarray(mean, float), np.asarray(cov, float), 1000)


def _random_cov(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fd_is_the_closed_form_for_gaussians_with_commuting_covariances():
    """For diagonal covariances, FD = |mu1 - mu2|^2 + sum_i (sigma1_i - sigma2_i)^2."""
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert metrics.frechet_distance(_stats(m1, np.diag(v1)), _stats(m2, np.diag(v2))) == pytest.approx(expected, 1e-12)


def test_fd_matches_pytorch_fids_formula_on_general_covariances():
    """pytorch-fid's formula: tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)), the real part of scipy's sqrtm."""
    rng = np.random.default_rng(1)
    a, b = _stats(rng.normal(size=16), _random_cov(rng, 16)), _stats(rng.normal(size=16), _random_cov(rng, 16))
    root = linalg.sqrtm(a.cov @ b.cov).real
    expected = np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(root)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_fd_is_zero_on_identical_sets_symmetric_and_grows_with_noise():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 12))
    same = metrics.Statistics.of(x)
    assert abs(metrics.frechet_distance(same, same)) < 1e-9 * np.trace(same.cov)
    noisy = [metrics.Statistics.of(x + s * rng.normal(size=x.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    distances = [metrics.frechet_distance(same, n) for n in noisy]
    assert distances == sorted(distances) and distances[0] > 0
    assert metrics.frechet_distance(noisy[2], same) == pytest.approx(distances[2], rel=1e-9)


def test_fd_of_fewer_points_than_dimensions_takes_the_small_matrix_to_the_same_value():
    rng = np.random.default_rng(8)
    real, few = rng.normal(size=(200, 40)), rng.normal(0.2, 1.5, size=(12, 40))
    a, b = metrics.Statistics.of(real), metrics.Statistics.of(few)
    assert b.centered is not None and a.centered is None
    middle = a.root @ b.cov @ a.root
    trace_sqrt = np.sqrt(np.clip(linalg.eigvalsh(middle), 0, None)).sum()
    diff = a.mean - b.mean
    expected = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_sqrt
    # rel 1e-7: the (40 x 40) matrix's 28 zero eigenvalues come out as rounding noise ~1e-15,
    # whose square roots add ~1e-6 to its trace; the small matrix has none of them
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-7)


def test_fd_matches_torchmetrics_on_the_feature_networks_features():
    """torchmetrics' FrechetInceptionDistance, given the feature network as its feature module,
    on the same images: an independent implementation (its own statistics, its own trace)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    from common.quality.network import FEATURE_LAYER, FEATURES, SPEC
    from pytorch_impl.features import features_and_logits
    from pytorch_impl.models import Network

    net = Network(SPEC, seed=0).eval()

    class Features(torch.nn.Module):
        num_features = FEATURES

        def forward(self, x):
            for name, layer in net.named_children():
                x = layer(x)
                if name == FEATURE_LAYER:
                    return x

    rng = np.random.default_rng(3)
    real = rng.uniform(-1, 1, (300, 1, 28, 28)).astype(np.float32)
    fake = np.clip(real[::-1] * 0.7 + rng.normal(0, 0.3, real.shape), -1, 1).astype(np.float32)
    fid = FrechetInceptionDistance(feature=Features()).double()
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(fake), real=False)
    ours = metrics.frechet_distance(
        metrics.Statistics.of(features_and_logits(net, real)[0]),
        metrics.Statistics.of(features_and_logits(net, fake)[0]),
    )
    assert ours > 0 and float(fid.compute()) == pytest.approx(ours, rel=1e-6)


def test_bootstrap_interval_holds_the_estimate():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(1000, 6)), rng.normal(0.3, 1.2, size=(1000, 6))
    fd = metrics.frechet_distance(metrics.Statistics.of(real), metrics.Statistics.of(fake))
    low, high = metrics.bootstrap_fd(metrics.Statistics.of(real), fake, np.random.default_rng(0))
    assert low < fd < high and high - low < fd


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(600, 10)), rng.normal(size=(600, 10))
    same, same_std = metrics.kid(x, y, np.random.default_rng(0), subsets=20, subset_size=300)
    shifted, _ = metrics.kid(x, y + 0.5, np.random.default_rng(0), subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3 and shifted > 10 * abs(same) and shifted > 0.05


def test_prdc_of_a_set_against_itself_is_perfect_and_matches_the_prdc_package():
    from prdc import compute_prdc

    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    found = metrics.prdc(x, x, k=5)
    assert found["precision"] == found["recall"] == found["coverage"] == 1.0 and found["density"] == pytest.approx(1.0)
    y = rng.normal(0.5, 1.3, size=(150, 8)).astype(np.float32)
    expected = compute_prdc(x, y, nearest_k=5)
    cached = metrics.prdc(x, y, k=5, radii=metrics.real_radii(x, 5))
    assert cached == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-6)


def test_class_histogram_counts_covered_classes_and_kl():
    reference = np.repeat(np.arange(10), 100)
    balanced = metrics.class_histogram(np.repeat(np.arange(10), 3), reference)
    assert balanced["counts"] == [3] * 10 and balanced["covered"] == 10 and balanced["kl"] == pytest.approx(0.0)
    collapsed = metrics.class_histogram(np.array([3] * 95 + [4] * 5), reference)
    assert collapsed["covered"] == 2 and collapsed["kl"] == pytest.approx(0.95 * np.log(9.5) + 0.05 * np.log(0.5))


def test_feature_network_training_is_deterministic_from_its_seed():
    from common.quality.network import ENTRIES
    from pytorch_impl.features import train_classifier

    rng = np.random.default_rng(7)
    images = rng.uniform(-1, 1, (256, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    first, again = (train_classifier(images, labels, seed=3, epochs=1, batch_size=64) for _ in range(2))
    other = train_classifier(images, labels, seed=4, epochs=1, batch_size=64)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)
    assert list(first) == [entry.key for entry in ENTRIES]  # the canonical names, nothing else


def test_weight_files_are_refused_when_their_tensors_change(tmp_path):
    state = {entry.key: np.full(entry.shape, i, np.float32) for i, entry in enumerate(ENTRIES)}
    path = tmp_path / "w.safetensors"
    save_weights(path, state, {"seed": "0"})
    loaded, metadata = load_weights(path)
    assert all(np.array_equal(loaded[k], state[k]) for k in state) and metadata["seed"] == "0"
    from safetensors.numpy import save_file

    changed = {**state, "features.fc5.bias": np.full(10, 2, np.float32)}
    save_file(changed, str(path), metadata=metadata)  # the old hash, new values
    with pytest.raises(ConfigError, match="w.safetensors.*hash"):
        load_weights(path)
    with pytest.raises(ConfigError, match="pinned|hash"):
        load_weights(tmp_path / "w.safetensors", pinned="0" * 64)


def test_the_committed_weights_are_canonical_and_pinned():
    state, metadata = load_weights(COMMITTED, COMMITTED_SHA256)
    assert list(state) == [entry.key for entry in ENTRIES] and metadata["network"] == "common.quality.network.SPEC"
    assert checkpoint.content_sha256(state) == COMMITTED_SHA256 == metadata["sha256"]


def test_weights_in_pytorchs_earlier_names_are_read_unchanged_and_others_refused(tmp_path):
    """A file cached before the network had a spec names its tensors as PyTorch did (`body.0`,
    `head.1`, with BN step counters): read under the canonical names, the same values."""
    state, _ = load_weights(COMMITTED, COMMITTED_SHA256)
    renamed = {f"features.{new}": old for old, new in EARLIER_NAMES.items()}
    earlier = {f"{renamed[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}": value for key, value in state.items()}
    earlier.update({f"body.{i}.num_batches_tracked": np.array([4680]) for i in (1, 5, 9)})
    save_weights(tmp_path / "cached.safetensors", earlier, {"seed": "0"})
    read, _ = load_weights(tmp_path / "cached.safetensors")
    assert list(read) == list(state) and all(np.array_equal(read[k], state[k]) for k in state)
    save_weights(tmp_path / "other.safetensors", {"conv1.weight": np.zeros((32, 1, 3, 3), np.float32)}, {})
    with pytest.raises(ConfigError, match="other.safetensors.*train-features --out"):
        load_weights(tmp_path / "other.safetensors")


def test_scores_are_refused_for_a_model_of_another_dataset():
    with pytest.raises(ConfigError, match="fashion-mnist"):
        check_dataset(make_config("mnist28", {"data.dataset": "fake"}), "fashion-mnist")
    with pytest.raises(ConfigError, match="--features"):
        check_dataset(make_config("mnist28"), "inception-v4")


def test_eval_n_too_small_for_prdc_is_refused_before_anything_loads():
    from common.train import RunOptions, Scorer

    with pytest.raises(ConfigError, match="--eval-n=6.*at least 7"):
        Scorer(make_config("mnist28"), RunOptions(steps=1, eval_every=1, eval_n=6), "torch")


def test_other_sizes_are_seen_as_28x28_grey():
    images = np.zeros((2, 3, 64, 64), np.float32)
    images[:, :, :32] = 1.0  # top half white in every channel
    seen = as_fashion_mnist(images)
    assert seen.shape == (2, 1, 28, 28)
    assert np.allclose(seen[:, 0, :13], 1.0) and np.allclose(seen[:, 0, 15:], 0.0)


def test_the_test_sets_features_are_cached_by_weights_and_images(tmp_path, monkeypatch):
    """Computed once and written to the cache directory; read back unchanged on the next call
    (the network is not run again); recomputed when the file is corrupt; a new file for other
    weights or backend, or other images."""
    from common.quality import evaluate

    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path))
    projection = np.random.default_rng(4).normal(size=(28 * 28, 12))
    calls = []

    def network(images):
        calls.append(len(images))
        found = np.maximum(images.reshape(len(images), -1) @ projection, 0)
        return found, found[:, :10]

    images = np.random.default_rng(5).uniform(-1, 1, (40, 1, 28, 28)).astype(np.float32)
    first = evaluate._test_set_features(network, "a|jax", images)
    expected, logits = network(images)
    assert np.array_equal(first["features"], expected) and np.array_equal(first["classes"], logits.argmax(axis=1))
    assert np.array_equal(first["radii"], metrics.real_radii(expected, evaluate.K))
    [cached] = tmp_path.glob("*.safetensors")
    calls.clear()
    again = evaluate._test_set_features(network, "a|jax", images)
    assert not calls, "the network ran again instead of reading the cache"
    assert all(np.array_equal(again[k], first[k]) for k in first)
    cached.write_bytes(b"not a safetensors file")
    assert np.array_equal(evaluate._test_set_features(network, "a|jax", images)["features"], expected)
    evaluate._test_set_features(network, "b|jax", images)
    evaluate._test_set_features(network, "a|torch", images)
    evaluate._test_set_features(network, "a|jax", images[:20])
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_the_spec_build_computes_the_earlier_pytorch_networks_features_bit_for_bit():
    """The network as PyTorch held it before it had a spec (two nn.Sequentials, `body` to the
    features and `head` to the logits), with the committed weights under their earlier names,
    against the spec's build with the canonical ones, on real test images: the same numbers."""
    import torch
    from torch import nn

    from common.quality.features import fashion_mnist
    from pytorch_impl import features as network

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    body = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(1152, 128), nn.ReLU())  # fmt: skip
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))
    state, _ = load_weights(COMMITTED, COMMITTED_SHA256)
    for old, new in EARLIER_NAMES.items():
        module = (body if old.startswith("body") else head)[int(old.split(".")[1])]
        for name, tensor in module.state_dict().items():
            if name != "num_batches_tracked":
                tensor.copy_(torch.from_numpy(state[f"features.{new}.{name}"]))
    images = fashion_mnist("t10k")[0][:64]
    with torch.no_grad():
        expected = body.eval()(torch.from_numpy(images))
        expected_logits = head.eval()(expected)
    found, logits = network.features_and_logits(network.load(state), images, batch_size=32)
    assert np.array_equal(found, expected.numpy()) and np.array_equal(logits, expected_logits.numpy())


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    """A state dict of torch-fidelity's Inception-v3 with random weights: the real file cannot
    be downloaded here, and the plumbing and shapes do not depend on the values."""
    import torch
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    with pytest.MonkeyPatch.context() as patched:  # build without downloading or loading weights
        patched.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patched.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)
    return path


def test_inception_features_score_a_model_of_any_dataset_from_a_local_file(tmp_path, inception_weights, capsys):
    """`dcgan eval --features inception --weights FILE` on a torch checkpoint of the `fake`
    dataset (which the Fashion-MNIST features refuse): 2048-d features of n generated images
    against n of the dataset's, the floor from n others; no class histogram."""
    from common.cli import main
    from pytorch_impl import inception

    run, scores = tmp_path / "run", tmp_path / "scores.json"
    tiny = ["--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "4", "--steps", "1", "--no-progress"]
    assert 0 == main(
        ["train", "--backend", "torch", "--preset", "svhn32", "--dataset", "fake", *tiny, "--out", str(run)]
    )
    assert main(["eval", "--checkpoint", str(run), "--n", "7"]) == 2
    assert "data.dataset='fake'" in capsys.readouterr().err  # refused, naming --features inception
    assert main(["eval", "--checkpoint", str(run), "--n", "6"]) == 2
    assert "--n=6" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--features", "inception", "--weights", str(inception_weights),
                 "--n", "7", "--json", str(scores), "--no-progress"]) == 0  # fmt: skip
    found = json.loads(scores.read_text())
    assert found["features"] == "FID (Inception-v3 features, random-inception.pth)"
    assert found["real"] == "7 images of fake" and found["n"] == 7 and "classes_covered" not in found
    assert found["reference"]["real_vs_real"]["n"] == found["reference"]["fresh_generator"]["n"] == 7
    assert 0 <= found["fd_low"] <= found["fd"] <= found["fd_high"] and np.isfinite(found["kid"])
    grey = np.zeros((2, 1, 28, 28), np.float32)  # any size and channel count: grey is repeated to RGB
    assert inception.features(inception.load(inception_weights), grey).shape == (2, 2048)


def test_inception_weights_are_refused_by_name_unless_a_state_dict_of_the_network(tmp_path, inception_weights):
    import torch

    from common.quality.evaluate import InceptionSpace
    from pytorch_impl import inception

    with pytest.raises(ConfigError, match="--weights.*local weight file"):
        InceptionSpace.load(None, make_config("mnist28", {"data.dataset": "fake"}), 8, False)
    with pytest.raises(ConfigError, match="missing.pth.*an existing file"):
        inception.load(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ConfigError, match="text.pth.*torch-fidelity's Inception-v3"):
        inception.load(tmp_path / "text.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth.*Error.*in loading state_dict"):
        inception.load(tmp_path / "other.pth")


def test_the_study_judges_each_backend_against_the_other_backends_seeds():
    """benchmarks/quality.py: each backend's mean FD over its seeds is judged against the range
    of the other backends' seeds, never a range its own seeds widened."""
    import argparse

    from benchmarks import quality

    def record(backend, seed, fd):
        scores = dict(fd=fd, fd_low=fd - 1, fd_high=fd + 1, kid=1.0, precision=0.8, recall=0.3, density=0.6)
        reference = {"real_vs_real": {"fd": 0.3}}
        return dict(backend=backend, seed=seed, steps=3000, coverage=0.2, classes_covered=10, wall_s=60.0,
                    reference=reference, curve=[], **scores)  # fmt: skip

    records = [record("torch", 0, 110)]
    assert quality.leave_one_out(records) == []  # nobody else to judge against
    records = [record(b, s, fd) for b, fds in (("torch", (100, 102, 104)), ("jax", (101, 103, 105)),
               ("keras-torch", (125, 126, 127))) for s, fd in enumerate(fds)]  # fmt: skip
    verdicts = {v["backend"]: v for v in quality.leave_one_out(records)}
    # the spread of all nine runs (100 to 127) would hold keras-torch; the others' (100 to 105) does not
    assert verdicts["keras-torch"]["inside"] is False and verdicts["keras-torch"]["mean"] == 126
    assert (verdicts["keras-torch"]["low"], verdicts["keras-torch"]["high"]) == (100, 105)
    assert verdicts["torch"]["inside"] and (verdicts["torch"]["low"], verdicts["torch"]["high"]) == (101, 127)
    assert verdicts["jax"]["seeds"] == 3 and verdicts["jax"]["sd"] == 2.0
    args = argparse.Namespace(steps=3000, seeds=[0, 1, 2], backends=["torch"])
    text = quality.markdown(records, args, "Made by a test.")
    assert "- keras-torch: 126.0 ± 1.0 (3 seeds), **outside** the others' 100.0 to 105.0" in text
    assert "- torch: 102.0 ± 2.0 (3 seeds), inside the others' 101.0 to 127.0" in text
    assert text.count("| torch |") == 3


def test_the_study_compares_g_across_runs_and_scores_the_average_beside_it(tmp_path, monkeypatch):
    """A run keeping G's moving average logs the average as fd and G as fd_raw: the study's
    curve puts G under fd (so that it compares with runs that keep none) and the average under
    fd_ema, and the report gives the average's change per run and along training."""
    import argparse
    import json

    from benchmarks import quality

    monkeypatch.setattr(quality, "RUNS", tmp_path)
    logged = [
        {"step": 1, "loss_D": 1.0},
        {"step": 500, "fd": 150.0, "fd_low": 149.0, "fd_high": 151.0, "fd_raw": 160.0, "fd_raw_low": 158.0,
         "fd_raw_high": 162.0},
        {"step": 1000, "fd": 120.0, "fd_low": 119.0, "fd_high": 121.0, "fd_raw": 126.0, "fd_raw_low": 125.0,
         "fd_raw_high": 127.0},
    ]  # fmt: skip
    for name, lines in (
        ("keras-jax-s2", logged),
        ("torch-s0", [{"step": 500, "fd": 170.0, "fd_low": 1, "fd_high": 2}]),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    averaged = quality.curve("keras-jax", 2)
    assert averaged == [{"step": 500, "fd": 160.0, "fd_low": 158.0, "fd_high": 162.0, "fd_ema": 150.0},
                        {"step": 1000, "fd": 126.0, "fd_low": 125.0, "fd_high": 127.0, "fd_ema": 120.0}]  # fmt: skip
    assert quality.curve("torch", 0) == [{"step": 500, "fd": 170.0, "fd_low": 1, "fd_high": 2}]

    def record(backend, seed, fd, ema=None):
        scores = dict(fd=fd, fd_low=fd - 1, fd_high=fd + 1, kid=1.0, precision=0.8, recall=0.3, density=0.6)
        if ema is not None:
            scores.update(fd_ema=ema, fd_ema_low=ema - 1, fd_ema_high=ema + 1)
        return dict(backend=backend, seed=seed, steps=1000, coverage=0.2, classes_covered=10, wall_s=60.0,
                    reference={"real_vs_real": {"fd": 0.3}}, curve=averaged, **scores)  # fmt: skip

    records = [record("torch", 0, 110), record("keras-jax", 2, 126, ema=120), record("keras-torch", 1, 130, ema=128)]
    text = quality.markdown(records, argparse.Namespace(steps=1000, seeds=[0, 1, 2]), "Made by a test.")
    assert "| keras-jax | 2 | 126.0 [125.0, 127.0] | 120.0 [119.0, 121.0] | -6.0 |" in text
    assert "Mean change at 1000 iterations over 2 runs: -4.0 FD (from -6.0 to -2.0)." in text
    assert "500: -10.0, 1000: -6.0." in text
    assert "G's moving average" not in quality.markdown(records[:1], argparse.Namespace(steps=1000), "Made.")


def test_the_study_plans_every_seed_of_every_backend_and_keeps_what_is_committed(tmp_path, monkeypatch):
    """A run in the committed quality.json is done: `run` trains only the others (a fresh clone
    does not retrain the study), and the plan goes seed by seed over all backends."""
    import argparse
    import json

    from benchmarks import quality

    assert quality.plan([0, 1], ["torch", "jax"]) == [("torch", 0), ("jax", 0), ("torch", 1), ("jax", 1)]
    records = tmp_path / "quality.json"
    records.write_text(
        json.dumps([{"backend": "torch", "seed": 0, "steps": 3000}, {"backend": "jax", "seed": 0, "steps": 2000}])
    )
    monkeypatch.setattr(quality, "RECORDS", records)
    monkeypatch.setattr(quality, "RUNS", tmp_path / "runs")
    trained = []
    monkeypatch.setattr(
        quality.subprocess,
        "run",
        lambda command, **kw: trained.append(
            command[command.index("--backend") + 1 : command.index("--backend") + 2]
            + [command[command.index("--seed") + 1]]
        ),
    )
    quality.run(argparse.Namespace(steps=3000, seeds=[0, 1], backends=["torch", "jax"]))
    assert trained == [["jax", "0"], ["torch", "1"], ["jax", "1"]]  # jax's committed run is of other length


# `dcgan eval` where PyTorch cannot be imported (an import hook refuses it, as where it is not
# installed): a tiny JAX checkpoint scored on JAX, one written by keras-torch scored on the
# first installed backend, and Inception refused.
WITHOUT_TORCH = """
import contextlib, io, json, sys


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTorch())
from pathlib import Path
from common import canonical, checkpoint
from common.backends import load_backend
from common.cli import main
from common.presets import make_config

out = Path(sys.argv[1])
config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4})
arrays = load_backend("jax").trainer(config).state_dict()
for writer in ("jax", "keras-torch"):
    checkpoint.save(out / f"{writer}.safetensors", arrays, canonical.metadata(config, writer, 0))
tiny = ["--n", "8", "--no-progress"]
commands = {
    "jax": ["--checkpoint", str(out / "jax.safetensors"), "--backend", "jax", "--json", str(out / "jax.json")],
    "default": ["--checkpoint", str(out / "keras-torch.safetensors"), "--json", str(out / "default.json")],
    "inception": ["--checkpoint", str(out / "jax.safetensors"), "--backend", "jax", "--features", "inception"],
}
found = {}
for name, args in commands.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        found[name] = {"code": main(["eval", *args, *tiny]), "stderr": err.getvalue()}
found["torch imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print(json.dumps(found))
"""


def test_eval_needs_no_pytorch(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["torch imported"] == []
    assert found["jax"]["code"] == 0, found["jax"]["stderr"]
    scores = json.loads((tmp_path / "jax.json").read_text())
    assert scores["backend"] == "jax" and scores["n"] == 8 and np.isfinite(scores["fd"]) and scores["fd"] > 0
    assert found["default"]["code"] == 0, found["default"]["stderr"]
    assert json.loads((tmp_path / "default.json").read_text())["backend"] == "jax"
    said = "on jax (the first one installed; keras-torch, which wrote the checkpoint, is not"
    assert said in found["default"]["stderr"]
    assert found["inception"]["code"] == 2
    [line] = found["inception"]["stderr"].strip().splitlines()
    assert "--features='inception'" in line and "pip install -e '.[inception]'" in line
