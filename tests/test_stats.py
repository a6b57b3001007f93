"""Statistics on synthetic predictions whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mnistlab.stats import mcnemar_exact, mean_ci, pairwise_mcnemar, pairwise_verdicts, summarize_by_model


def test_identical_predictions_give_p_one():
    correct = np.random.default_rng(0).random(10_000) < 0.98
    assert mcnemar_exact(correct, correct) == (0, 0, 1.0)


def test_thirty_images_only_one_model_gets_right_is_significant():
    a = np.ones(10_000, bool)
    b = a.copy()
    b[:30] = False
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (30, 0)
    assert p == pytest.approx(2 * 0.5**30)  # exact two-sided binomial: both tails of 30/30
    assert p < 1e-8


def test_balanced_disagreement_is_not_significant():
    a = np.ones(1000, bool)
    b = np.ones(1000, bool)
    a[:15] = False
    b[15:30] = False
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (15, 15) and p == pytest.approx(1.0)


def test_mcnemar_rejects_unpaired():
    with pytest.raises(ValueError, match="differ in shape"):
        mcnemar_exact(np.ones(5, bool), np.ones(6, bool))


def test_mean_ci_known_values():
    mean, std, low, high = mean_ci([0.97, 0.98, 0.99])
    assert mean == pytest.approx(0.98) and std == pytest.approx(0.01)
    # t(0.975, df=2) = 4.3027; half-width = 4.3027 * 0.01 / sqrt(3)
    assert high - mean == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)
    single = mean_ci([0.9])
    assert single[0] == 0.9 and all(math.isnan(v) for v in single[1:])


def test_summarize_by_model_orders_and_counts():
    runs = pd.DataFrame({"model": ["b", "a", "a", "b"], "test_accuracy": [0.9, 0.8, 0.82, 0.92],
                         "test_loss": [0.3, 0.5, 0.4, 0.2], "train_seconds": [1, 2, 3, 4]})
    table = summarize_by_model(runs, order=["a", "b"])
    assert table.model.tolist() == ["a", "b"] and table.n_runs.tolist() == [2, 2]
    assert table.test_accuracy_mean.tolist() == pytest.approx([0.81, 0.91])


def test_pairwise_with_holm_and_verdicts():
    truth = np.ones(2000, bool)
    worse = truth.copy()
    worse[:40] = False
    correct = {("good", 0): truth, ("same", 0): truth.copy(), ("bad", 0): worse,
               ("good", 1): truth, ("same", 1): truth.copy(), ("bad", 1): worse}
    table = pairwise_mcnemar(correct)
    assert len(table) == 6  # 3 pairs x 2 seeds
    same = table[(table.model_a == "good") & (table.model_b == "same")]
    assert (same.p_value == 1.0).all() and not same.significant.any()
    bad = table[(table.model_a == "good") & (table.model_b == "bad")]
    assert bad.significant.all() and (bad.p_holm >= bad.p_value).all()
    verdicts = pairwise_verdicts(table).set_index(["model_a", "model_b"])
    assert verdicts.loc[("good", "bad"), "significant_all_seeds"]
    assert not verdicts.loc[("good", "same"), "significant_all_seeds"]
    assert verdicts.loc[("good", "bad"), "n_seeds"] == 2


def test_ensemble_of_runs(tmp_path):
    from mnistlab.evaluate import ensemble, save_predictions

    y = np.array([0, 1, 2, 3])
    # Each run is wrong on one image, with a weak vote; together they are right on all four.
    a = np.eye(4, 10)[[0, 1, 2, 0]] * 0.6 + 0.04
    b = np.eye(4, 10)[[0, 1, 1, 3]] * 0.6 + 0.04
    c = np.eye(4, 10)[[0, 2, 2, 3]] * 0.6 + 0.04
    for name, p in zip("abc", (a, b, c)):
        (tmp_path / name).mkdir()
        save_predictions(tmp_path / name / "predictions.npz", y, p)
    result = ensemble([tmp_path / n for n in "abc"], against=[tmp_path / "a"])
    assert result["run_accuracies"] == [0.75, 0.75, 0.75] and result["ensemble_accuracy"] == 1.0
    assert result["images"] == 4 and result["ensemble_ci95"][1] == 1.0 and 0 < result["ensemble_ci95"][0] < 0.5
    # Against run a: the ensemble alone is right on image 3, a never alone; one discordant pair: p = 1.
    (row,) = result["against"]
    assert (row["run"], row["accuracy"], row["only_ensemble_right"], row["only_run_right"]) == ("a", 0.75, 1, 0)
    assert row["p_value"] == 1.0
    with pytest.raises(ValueError, match="at least two runs"):
        ensemble([tmp_path / "a"])


def test_pareto_front_on_a_known_example():
    from mnistlab.stats import pareto_front

    table = pd.DataFrame({"accuracy": [0.99, 0.98, 0.97, 0.98, 0.95],
                          "seconds": [100.0, 20.0, 30.0, 20.0, 5.0]}, index=list("abcde"))
    # c is dominated by b (better and faster); b and d tie, neither dominates the other.
    assert pareto_front(table, "accuracy", "seconds").to_dict() == {"a": True, "b": True, "c": False,
                                                                     "d": True, "e": True}


def test_seconds_to_reach_the_final_validation_accuracy():
    from mnistlab.stats import seconds_to_final

    history = pd.DataFrame({"val_accuracy": [0.90, 0.975, 0.9795, 0.980], "epoch_seconds": [10.0, 11.0, 12.0, 13.0]})
    assert seconds_to_final(history) == 33.0  # 0.9795 is within 0.001 of 0.980, after 3 epochs
    assert seconds_to_final(history, tolerance=0.01) == 21.0
