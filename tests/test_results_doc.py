"""docs/make_results.py: the tables it derives from committed data."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
import make_results


def test_same_model_pairs_keep_only_variants_of_one_model():
    pairwise = pd.DataFrame({
        "model_a": ["cnn", "cnn", "mlp"] * 2, "model_b": ["cnn[recipe=article]", "mlp", "mlp[recipe=article]"] * 2,
        "seed": [0, 0, 0, 1, 1, 1], "only_a_right": [10, 50, 3, 12, 40, 4], "only_b_right": [30, 5, 4, 25, 6, 2],
        "p_value": [0.001, 1e-9, 0.7, 0.03, 1e-8, 0.6], "p_holm": [0.003, 3e-9, 0.7, 0.06, 3e-8, 0.6],
        "significant": [True, True, False, False, True, False]})
    model_of = {"cnn": "cnn", "cnn[recipe=article]": "cnn", "mlp": "mlp", "mlp[recipe=article]": "mlp"}
    pairs = make_results.same_model_pairs(pairwise, model_of)
    assert pairs.variant_a.tolist() == ["cnn", "mlp"]  # cnn against mlp is not a pair of variants
    cnn = pairs.iloc[0]
    assert (cnn.n_seeds, cnn.only_a_right, cnn.only_b_right) == (2, 22, 55)
    assert cnn.p_holm_max == 0.06 and not cnn.significant_all_seeds  # not significant with seed 1
    table = make_results._pairs_table(pairs)
    assert "| `cnn` | `cnn[recipe=article]` | 2 | 22 | 55 | 0.06 | no |" in table
    assert len(make_results.same_model_pairs(pairwise, model_of, every_pair=True)) == 3


def test_a_suites_ensemble_and_time_around_its_runs(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(make_results, "DATA", tmp_path)
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "timing").mkdir()
    (tmp_path / "ensembles" / "best.json").write_text(json.dumps({
        "model": "deep_bn_cnn", "against_variant": "bn_cnn", "runs": ["a", "b"], "run_accuracies": [0.9968, 0.9971],
        "ensemble_accuracy": 0.9975, "images": 10000, "ensemble_ci95": [0.9963, 0.9984],
        "against": [{"run": "bn_cnn-x", "accuracy": 0.9943, "only_ensemble_right": 40, "only_run_right": 8,
                     "p_value": 2e-6}]}))
    pd.DataFrame({"run": ["r0", "r1", "r2"], "model": ["slp", "mlp", "cnn"], "seed": [0, 0, 0],
                  "train_seconds": [4.9, 5.6, 16.4], "around_seconds": [11.1, 3.2, 3.8], "checks_and_data": [0.9, 0.1, 0.1],
                  "figures": [1.3, 0.9, 1.0], "outside_the_run": [7.8, 0.6, 0.7]}).to_csv(tmp_path / "timing" / "best.csv",
                                                                                          index=False)
    text = "\n".join(make_results._ensemble_and_timing("best"))
    assert "**0.9975** (95% CI 0.9963-0.9984, Clopper-Pearson over its 10,000 test images; members 0.9968, 0.9971)" in text
    assert "| bn_cnn-x | 0.9943 | 40 | 8 | 2e-06 |" in text
    # The verdict against make best's targets: the members' mean (0.99695) is short, not rounded up to 0.9970.
    assert "mean over its 2 seeds, 0.9970, **short** of 0.9970 by 0.00005" in text
    assert "the ensemble of 2, 0.9975, **short** of 0.9976 by 0.0001" in text
    assert make_results._best_verdict({"run_accuracies": [0.9970, 0.9972, 0.9971], "ensemble_accuracy": 0.9976}).count(
        "**meets**") == 2
    assert "| `mlp` seed 0 | 5.6 | 3.20 | 0.10 | 0.90 | 0.60 |" in text
    assert "3.50 s per run on average after the first (largest 3.80 s); the first run 11.10 s" in text
    assert "The whole run-all" not in text  # an older suite: run_all_timing.json had no such seconds
    (tmp_path / "best.json").write_text(json.dumps({"run_all_seconds": 80.0, "robustness_seconds": 9.0,
                                                    "comparison_seconds": 12.0, "outside_the_runs_seconds": 5.0}))
    text = "\n".join(make_results._ensemble_and_timing("best"))
    assert ("The whole run-all took 80.0 s: its 3 runs (training 26.9 s in all, around it 18.1 s in all), the "
            "robustness step 9.0 s, the comparison notebook 12.0 s, and run-all's own work between the runs") in text


def test_a_suite_table_shows_the_validation_accuracy_recipes_are_chosen_on():
    runs = pd.DataFrame({"model": ["bn_cnn", "bn_cnn", "pool_cnn"], "variant": ["bn_cnn", "bn_cnn", "pool_cnn"],
                         "seed": [0, 1, 0], "test_accuracy": [0.9947, 0.9937, 0.9913],
                         "val_accuracy": [0.9928, 0.9916, float("nan")], "train_seconds": [100.0, 120.0, 30.0]})
    table = make_results._suite_table(runs)
    assert "| `bn_cnn` | 2 | 0.9947, 0.9937 | 0.9942 ± 0.0007 | 0.994 | yes | 0.9922 | 110.0 |" in table
    assert "| `pool_cnn` | 1 | 0.9913 | 0.9913 | - | - | - | 30.0 |" in table  # no validation split held out
