"""Comparisons beyond clean accuracy on constructed run folders (no training): the disagreement
selection, the per-class difference, accuracy per corruption with intervals, McNemar/Holm per
corruption, calibration over seeds, labels that name a machine's choice only where it matters,
the comparison's sections and files, the sweep report's tables, and `evaluate`'s bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnistlab import beyond_accuracy as beyond
from mnistlab.results import latest_runs, load_runs
from mnistlab.robustness import REGENERATED

Y_TRUE = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 3, dtype=np.uint8)


def fake_run(runs_dir: Path, variant: str, seed: int, y_pred, precision: str = "float32", corrupted: dict | None = None,
             ece: float = 0.05) -> Path:
    """A completed run folder holding just what a comparison reads."""
    run = runs_dir / f"{variant.split('[')[0]}-2026120{seed}-000000-{abs(hash((variant, seed, precision))) % 10**12:012d}"
    run.mkdir(parents=True)
    y_pred = np.asarray(y_pred, dtype=np.uint8)
    probabilities = np.full((len(Y_TRUE), 10), 0.02, np.float32)
    probabilities[np.arange(len(Y_TRUE)), y_pred] = 0.82
    np.savez(run / "predictions.npz", y_true=Y_TRUE, y_pred=y_pred, probabilities=probabilities)
    accuracy = float(np.mean(y_pred == Y_TRUE))
    (run / "config.json").write_text(json.dumps({
        "config": {"model": variant.split("[")[0], "dataset": "mnist", "seed": seed, "recipe": "mnistlab"},
        "resolved": {"precision": precision, "threads": 2}, "variant": variant, "variant_hash": f"{variant}-{precision}",
        "config_hash": f"{variant}-{seed}-{precision}", "data": {"class_names": list("0123456789")},
        "model": {"reported_accuracy": 0.99}}))
    (run / "status.json").write_text(json.dumps({"status": "completed"}))
    (run / "metrics.json").write_text(json.dumps({
        "test_accuracy": accuracy, "test_loss": 1 - accuracy, "train_seconds": 10.0 + seed, "params": 100,
        "val_accuracy": accuracy, "ece": ece, "ece_after_temperature": ece / 2, "nll": 0.3, "brier": 0.1,
        "temperature": 1.5, "epochs_run": 1}))
    pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, accuracy], "val_loss": [1.0, 0.6],
                  "val_accuracy": [0.5, accuracy], "learning_rate": [0.001] * 2, "epoch_seconds": [5.0, 5.0]}
                 ).to_csv(run / "history.csv", index=False)
    rows = []
    for name, predictions in (corrupted or {}).items():
        folder = run / "evaluations" / REGENERATED
        folder.mkdir(parents=True, exist_ok=True)
        predictions = np.asarray(predictions, np.uint8)
        probs = np.full((len(Y_TRUE), 10), 0.1, np.float16)
        np.savez(folder / f"{name}.npz", y_true=Y_TRUE, y_pred=predictions, probabilities=probs)
        rows.append({"suite": REGENERATED, "test_set": name, "sha256": "ab" * 32, "images": len(Y_TRUE),
                     "accuracy": float(np.mean(predictions == Y_TRUE)), "loss": 1.0, "ece": 0.1, "label": "x"})
    if rows:
        pd.DataFrame(rows).to_csv(run / "evaluations.csv", index=False)
    return run


def wrong_at(indices) -> np.ndarray:
    """Predictions right everywhere but at `indices` (where they say the next class)."""
    y = Y_TRUE.copy()
    y[list(indices)] = (Y_TRUE[list(indices)] + 1) % 10
    return y


def counted(runs_dir: Path) -> pd.DataFrame:
    return latest_runs(load_runs(runs_dir), "mnist")[0]


def test_disagreements_are_right_on_every_seed_against_wrong_on_every_seed(tmp_path):
    # A is wrong at 7 on every seed and at 3 on seed 1 only; B is wrong at 2 and 5 on every seed.
    for seed, a_wrong in ((0, [7]), (1, [7, 3]), (2, [7])):
        fake_run(tmp_path, "a", seed, wrong_at(a_wrong))
        fake_run(tmp_path, "b", seed, wrong_at([2, 5]))
    table = beyond.disagreements(counted(tmp_path), "a", "b")
    assert sorted(table["index"]) == [2, 5, 7]  # 3 is not: A gets it right on two seeds of three
    assert table.set_index("index").right.to_dict() == {2: "a", 5: "a", 7: "b"}
    row = table.set_index("index").loc[2]
    assert (row.pred_a, row.pred_b, row.y_true) == (2, 3, 2) and row.confidence_b == pytest.approx(0.82)


def test_per_class_difference_with_its_interval(tmp_path):
    # Class 2 has 3 images (indices 2, 12, 22): B misses one on every seed, A none.
    for seed in range(3):
        fake_run(tmp_path, "a", seed, Y_TRUE)
        fake_run(tmp_path, "b", seed, wrong_at([12]))
    table = beyond.per_class_difference(counted(tmp_path), "a", "b", list("0123456789")).set_index("class")
    assert table.loc["2", "mean"] == pytest.approx(1 / 3) and table.loc["2", "seeds"] == 3
    assert table.loc["2", "ci_low"] == pytest.approx(1 / 3)  # no spread over seeds
    assert table.drop(index="2")["mean"].abs().max() == 0


def test_accuracy_per_corruption_and_mcnemar_against_the_best(tmp_path):
    for seed in range(3):
        # "a" is best on clean images; on fog it loses 20 of 30 images, "b" only 2.
        fake_run(tmp_path, "a", seed, Y_TRUE, corrupted={"fog": wrong_at(range(20)), "shot_noise": wrong_at([seed])})
        fake_run(tmp_path, "b", seed, wrong_at([4]), corrupted={"fog": wrong_at([0, 1]),
                                                                "shot_noise": wrong_at([seed + 1])})
    runs = counted(tmp_path)
    long = beyond.corruption_accuracy(runs)
    assert len(long) == 12
    summary = beyond.corruption_summary(long).set_index(["variant", "test_set"])
    assert summary.loc[("a", "fog"), "mean"] == pytest.approx(10 / 30)
    assert summary.loc[("b", "mean over corruptions"), "mean"] == pytest.approx((28 / 30 + 29 / 30) / 2)
    tests = beyond.corruption_mcnemar(runs, "a").set_index("test_set")
    assert tests.loc["fog", "verdict"] == "best worse" and tests.loc["fog", "only_other_right"] == 18 * 3
    assert tests.loc["shot_noise", "verdict"] == "no significant difference"
    line = beyond.beyond_accuracy_line(beyond.corruption_summary(long), beyond.calibration_summary(runs))
    assert line.startswith("Most robust: b, mean accuracy 0.9500")


def test_calibration_over_seeds(tmp_path):
    for seed, ece in enumerate((0.02, 0.04, 0.06)):
        fake_run(tmp_path, "a", seed, Y_TRUE, ece=ece)
    table = beyond.calibration_summary(counted(tmp_path)).iloc[0]
    assert table.ece == pytest.approx(0.04) and table.ece_after_temperature == pytest.approx(0.02)
    assert table.ece_ci_low < 0.04 < table.ece_ci_high


def test_a_label_names_the_machines_precision_only_where_two_differ(tmp_path):
    fake_run(tmp_path, "bn_cnn", 0, Y_TRUE, precision="mixed_bfloat16")
    fake_run(tmp_path, "bn_cnn", 1, Y_TRUE, precision="mixed_bfloat16")
    fake_run(tmp_path, "mlp", 0, Y_TRUE, precision="float32")
    assert sorted(set(load_runs(tmp_path).variant)) == ["bn_cnn", "mlp"]
    fake_run(tmp_path, "bn_cnn", 0, Y_TRUE, precision="float32")  # the same label, from an AVX2-only machine
    assert sorted(set(load_runs(tmp_path).variant)) == ["bn_cnn[precision=float32]",
                                                        "bn_cnn[precision=mixed_bfloat16]", "mlp"]
    assert len(counted(tmp_path)) == 4  # both kept: neither supersedes the other


@pytest.mark.slow  # figures and the test images
def test_the_comparison_writes_every_section(tmp_path, real_data_dir, monkeypatch):
    from mnistlab.compare import Comparison

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    for seed in range(2):
        fake_run(tmp_path, "mlp", seed, wrong_at([1, 2]), corrupted={"fog": wrong_at([3])})
        fake_run(tmp_path, "cnn", seed, wrong_at([1]), corrupted={"fog": wrong_at([3, 4, 5])})
    cmp = Comparison(tmp_path)
    headline, answer = cmp.answer()
    assert headline.startswith("Best: cnn") and answer.variant.tolist() == ["cnn", "mlp"]
    assert cmp.counted_note() == "4 runs compared; none left out"
    assert set(cmp.every_run().columns) >= {"machine: precision", "machine: threads"}
    assert cmp.by_variant()["reported by the source"].tolist() == ["0.9900", "0.9900"]
    cmp.accuracy_figure(), cmp.curves(), cmp.cost(), cmp.pairwise()
    accuracy, verdicts, _ = cmp.robustness()
    assert accuracy.loc["mlp", "fog"] == pytest.approx(29 / 30, abs=1e-4)  # rounded to 4 decimals
    view, _ = cmp.calibration()
    assert view.ECE.iloc[0].startswith("0.0500")
    table, _, _ = cmp.disagreements()
    assert table["index"].tolist() == [2] and table.right.tolist() == ["a"]
    assert cmp.beyond_line().startswith("Most robust: mlp")
    for name in ("answer.csv", "summary.csv", "by_model.csv", "accuracy.png", "comparison.png", "cost.csv", "pareto.png",
                 "pairwise.csv", "pairwise.png", "robustness.csv", "robustness_mcnemar.csv", "robustness.png",
                 "calibration.csv", "reliability.png", "disagreements.csv", "disagreements.png",
                 "class_difference.png"):
        assert (tmp_path / name).is_file(), name


def test_the_sweep_report_tables(tmp_path):
    from mnistlab.sweep_report import best_against_default, runs_apart, settings_table

    rows = []
    for seed in range(3):
        for point, y_pred, val in (("default", wrong_at(range(12)), 0.90), ("learning_rate=0.01", Y_TRUE, 0.95)):
            run = fake_run(tmp_path, "mlp" if point == "default" else "mlp[learning_rate=0.01]", seed, y_pred)
            rows.append({"point": point, "seed": seed, "status": "completed", "val_accuracy": val + seed / 100,
                         "test_accuracy": float(np.mean(y_pred == Y_TRUE)), "train_seconds": 3.0, "run": run.name})
    rows.append({"point": "learning_rate=1.0", "seed": 0, "status": "diverged", "val_accuracy": np.nan,
                 "test_accuracy": np.nan, "train_seconds": np.nan, "run": "mlp-x"})
    table = pd.DataFrame(rows)
    settings = settings_table(table)
    assert settings.setting.tolist() == ["learning_rate=0.01", "default"]
    assert settings.chosen.tolist() == ["best on validation", ""] and settings.val_accuracy[0] == "0.9600 ± 0.0100"
    assert runs_apart(table).status.tolist() == ["diverged"]
    sentence = best_against_default(tmp_path, table)
    assert "significantly different on every seed" in sentence and "only the best got right: 36" in sentence


@pytest.mark.slow  # starts TensorFlow
def test_evaluate_refuses_bad_input_before_writing(tmp_path, capsys):
    from mnistlab.cli import main

    run = fake_run(tmp_path, "mlp", 0, Y_TRUE)
    before = sorted(p.name for p in run.iterdir())
    assert main(["evaluate", "--run", str(run)]) == 2  # a run folder without model.keras
    assert "has no model.keras" in capsys.readouterr().err
    (run / "model.keras").write_bytes(b"not a model")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_test=np.zeros((5, 28, 28), np.uint8), y_test=np.zeros(4, np.uint8))
    assert main(["evaluate", "--run", str(run), "--test-set", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.npz" in err and "\n" not in err
    assert main(["evaluate", "--run", str(run), "--test-set", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == sorted(before + ["model.keras"])  # nothing written


@pytest.mark.slow  # figures and the test images
def test_the_pair_view_renders_a_default_pair_statically(tmp_path, real_data_dir, monkeypatch, capsys):
    import mnistlab
    from mnistlab.pair_view import pair_verdict

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    shown = []
    monkeypatch.setattr("mnistlab.pair_view.display", lambda *objects: shown.extend(objects))
    for seed in range(2):
        fake_run(tmp_path, "mlp", seed, wrong_at(range(10)), corrupted={"fog": wrong_at([3])})
        fake_run(tmp_path, "cnn", seed, wrong_at([1]), corrupted={"fog": wrong_at([3, 4, 5])})
    before = sorted(p.name for p in tmp_path.iterdir())
    assert mnistlab.explore(tmp_path, static=True) is None
    markdown = [o.data for o in shown if hasattr(o, "data") and isinstance(o.data, str)]
    assert markdown[0] == "### cnn (A) against mlp (B)"
    assert "McNemar's exact test over 2 seed(s): **significantly different with every seed**" in markdown[1]
    assert "only cnn gets right: 18; only mlp: 0" in markdown[1]
    assert sum(type(o).__name__ == "Figure" for o in shown) == 4  # curves, per class, gallery, corruptions
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the view writes nothing
    assert pair_verdict(counted(tmp_path), "cnn", "nope").startswith("No seed has runs of both")


@pytest.mark.slow  # trains a model
def test_evaluate_on_the_official_layout_and_an_idx_pair_matches_an_independent_evaluation(tmp_path, tiny_data,
                                                                                          capsys):
    import keras

    from conftest import synthetic_images, write_idx
    from mnistlab.cli import main
    from mnistlab.config import make_config
    from mnistlab.data import FILE_STEMS
    from mnistlab.train import train_and_evaluate

    run = train_and_evaluate(make_config("slp", epochs=2, batch_size=32, verbose=0), tmp_path / "runs", data=tiny_data)
    x, y = synthetic_images(300, seed=7)
    official = tmp_path / "mnist_c"
    for name, images in (("shot_noise", x), ("inverted", 255 - x)):
        (official / name).mkdir(parents=True)
        np.save(official / name / "test_images.npy", images[..., None])  # (N, 28, 28, 1) uint8, as MNIST-C ships
        np.save(official / name / "test_labels.npy", y.astype(np.int64))
    pair = tmp_path / "qmnist-like"
    pair.mkdir()
    write_idx(pair / FILE_STEMS["test_images"], x[:200])
    write_idx(pair / FILE_STEMS["test_labels"], y[:200])
    model = keras.models.load_model(run / "model.keras")  # the independent evaluation: Keras alone
    expected = {"shot_noise": np.mean(model.predict(x, verbose=0).argmax(1) == y),
                "inverted": np.mean(model.predict(255 - x, verbose=0).argmax(1) == y),
                "qmnist-like": np.mean(model.predict(x[:200], verbose=0).argmax(1) == y[:200])}
    for test_set in (official, pair):
        assert main(["evaluate", "--run", str(run), "--test-set", str(test_set)]) == 0
    table = pd.read_csv(run / "evaluations.csv").set_index("test_set")
    for name, accuracy in expected.items():
        assert table.loc[name, "accuracy"] == pytest.approx(accuracy, abs=1e-9), name
    assert table.loc["qmnist-like", "images"] == 200 and table.loc["shot_noise", "suite"] == "mnist_c"
    saved = np.load(run / "evaluations" / "mnist_c" / "inverted.npz")
    assert np.array_equal(saved["y_true"], y) and saved["probabilities"].shape == (300, 10)
    assert "qmnist-like" in capsys.readouterr().out
