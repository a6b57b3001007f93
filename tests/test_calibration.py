"""Calibration metrics on hand-computed and synthetic probabilities: ECE and reliability tables,
NLL, Brier score, temperature scaling, the reliability figure, and bad inputs."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import softmax  # noqa: E402

from mnistlab.calibration import (  # noqa: E402
    apply_temperature,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    reliability_table,
)

# Six images, three classes, five bins with edges 0, .2, .4, .6, .8, 1.
HAND_PROBABILITIES = np.array([
    [0.90, 0.05, 0.05],  # label 0: confidence .90, right  -> bin 4
    [0.10, 0.70, 0.20],  # label 2: confidence .70, wrong  -> bin 3
    [0.25, 0.30, 0.45],  # label 2: confidence .45, right  -> bin 2
    [0.05, 0.95, 0.00],  # label 1: confidence .95, right  -> bin 4
    [1.00, 0.00, 0.00],  # label 1: confidence 1,   wrong  -> bin 4 (the last bin holds 1)
    [0.50, 0.30, 0.20],  # label 0: confidence .50, right  -> bin 2
])
HAND_LABELS = np.array([0, 2, 2, 1, 1, 0])
# bin 2: 2 images, mean confidence (.45 + .50) / 2 = .475, accuracy 1   -> gap .525
# bin 3: 1 image,  mean confidence .70,                accuracy 0   -> gap .70
# bin 4: 3 images, mean confidence (.90 + .95 + 1) / 3 = .95, accuracy 2/3 -> gap .95 - .6667 = .28333
# ECE = (2 * .525 + 1 * .70 + 3 * .28333) / 6 = (1.05 + .70 + .85) / 6 = 2.6 / 6
HAND_ECE = 2.6 / 6


def random_logits(n: int, num_classes: int = 10, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, num_classes)) * scale


def labels_drawn_from(probabilities: np.ndarray, seed: int = 1) -> np.ndarray:
    """Labels sampled from each row's distribution: probabilities calibrated by construction."""
    rng = np.random.default_rng(seed)
    cumulative = probabilities.cumsum(axis=1)
    u = rng.random((len(probabilities), 1))
    return np.minimum((u > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def straightforward_ece(p: np.ndarray, y: np.ndarray, bins: int) -> float:
    """ECE by a plain loop over bins (low, high], the first also holding 0."""
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        in_bin = (confidence > low) & (confidence <= high) | ((b == 0) & (confidence == 0))
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return total


# ---- ECE and the reliability table ------------------------------------------------------


def test_ece_of_the_hand_computed_example():
    assert expected_calibration_error(HAND_PROBABILITIES, HAND_LABELS, bins=5) == pytest.approx(HAND_ECE)


def test_reliability_table_of_the_hand_computed_example_keeps_empty_bins():
    table = reliability_table(HAND_PROBABILITIES, HAND_LABELS, bins=5)
    assert list(table.columns) == ["bin", "low", "high", "count", "confidence", "accuracy"]
    assert table["bin"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(table["low"], [0, .2, .4, .6, .8])
    np.testing.assert_allclose(table["high"], [.2, .4, .6, .8, 1])
    assert table["count"].tolist() == [0, 0, 2, 1, 3]
    np.testing.assert_allclose(table["confidence"], [np.nan, np.nan, .475, .70, .95])
    np.testing.assert_allclose(table["accuracy"], [np.nan, np.nan, 1, 0, 2 / 3])


def test_bins_hold_low_exclusive_high_inclusive_and_one_in_the_last():
    # Confidence .4 is the edge between bins 1 and 2 of five: (.2, .4] takes it.
    table = reliability_table([[0.4, 0.3, 0.3], [1.0, 0.0, 0.0]], [0, 0], bins=5)
    assert table["count"].tolist() == [0, 1, 0, 0, 1]


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_equals_a_straightforward_loop_on_random_probabilities(bins):
    p = softmax(random_logits(2000, seed=3), axis=1)
    y = np.random.default_rng(4).integers(0, 10, 2000)
    assert expected_calibration_error(p, y, bins) == pytest.approx(straightforward_ece(p, y, bins), abs=1e-12)


def test_ece_is_small_for_calibrated_probabilities_and_large_for_overconfident_ones():
    logits = random_logits(20000, seed=5)
    y = labels_drawn_from(softmax(logits, axis=1))
    assert expected_calibration_error(softmax(logits, axis=1), y) < 0.015
    assert expected_calibration_error(softmax(logits * 2.5, axis=1), y) > 0.10


# ---- NLL and Brier ----------------------------------------------------------------------


def test_negative_log_likelihood_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
    # -(ln .7 + ln .4) / 2 = (0.356675 + 0.916291) / 2
    assert negative_log_likelihood(p, [0, 2]) == pytest.approx(0.636483, abs=1e-6)
    # Class 1 and 2 never occur as labels: still three classes (labels=range(C)).
    assert negative_log_likelihood(p, [0, 0]) == pytest.approx(-(np.log(.7) + np.log(.1)) / 2)


def test_brier_score_by_hand_and_not_halved_for_two_classes():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
    # row 1: .3^2 + .2^2 + .1^2 = .14; row 2: .1^2 + .5^2 + .6^2 = .62; mean .38
    assert brier_score(p, [0, 2]) == pytest.approx(0.38)
    # Two classes: .8^2 + .8^2 = 1.28 (scikit-learn's default would halve it to .64).
    assert brier_score([[0.8, 0.2]], [1]) == pytest.approx(1.28)


def test_float32_probabilities_give_the_float64_values_without_warnings():
    p64 = softmax(random_logits(500, seed=6), axis=1)
    p32 = p64.astype(np.float32)
    y = labels_drawn_from(p64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. scikit-learn's "y_prob values do not sum to one"
        for metric in (negative_log_likelihood, brier_score, expected_calibration_error):
            assert metric(p32, y) == pytest.approx(metric(p64, y), abs=1e-5)


# ---- temperature scaling ----------------------------------------------------------------


def overconfident_split(n: int, seed: int, true_temperature: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits); probabilities softmax(logits * T): over-confident by T."""
    logits = random_logits(n, seed=seed)
    y = labels_drawn_from(softmax(logits, axis=1), seed=seed + 100)
    return softmax(logits * true_temperature, axis=1).astype(np.float32), y


def test_fit_temperature_recovers_a_known_temperature_and_lowers_ece():
    p_val, y_val = overconfident_split(5000, seed=10)
    p_test, y_test = overconfident_split(5000, seed=20)
    temperature = fit_temperature(p_val, y_val)
    assert temperature == pytest.approx(2.5, rel=0.03)
    scaled = apply_temperature(p_test, temperature)
    assert expected_calibration_error(scaled, y_test) < 0.3 * expected_calibration_error(p_test, y_test)


def test_fit_temperature_survives_a_zero_probability_on_the_true_class():
    p_val, y_val = overconfident_split(5000, seed=10)
    p_val[0] = 0
    p_val[0, (y_val[0] + 1) % 10] = 1  # certain and wrong: log 0 would make every T's NLL infinite
    assert fit_temperature(p_val, y_val) == pytest.approx(2.5, rel=0.03)


def test_fit_temperature_on_calibrated_probabilities_is_near_one():
    p_val, y_val = overconfident_split(5000, seed=11, true_temperature=1.0)
    assert fit_temperature(p_val, y_val) == pytest.approx(1.0, rel=0.05)


def test_apply_temperature_returns_float32_probabilities_and_keeps_the_ranking():
    p = softmax(random_logits(200, seed=7), axis=1)
    p[0] = [1.0] + [0.0] * 9  # zeros are clipped, not -inf
    scaled = apply_temperature(p, 2.0)
    assert scaled.dtype == np.float32 and scaled.shape == p.shape
    assert np.all(np.isfinite(scaled))
    np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(scaled.argmax(axis=1), p.argmax(axis=1))
    assert np.all(scaled.max(axis=1)[1:] < p.max(axis=1)[1:])  # T > 1 softens
    np.testing.assert_allclose(apply_temperature(p, 1.0)[1:], p[1:], atol=1e-6)


def test_calibration_metrics_fits_the_temperature_on_validation_only():
    p_test, y_test = overconfident_split(4000, seed=30)
    p_val, y_val = overconfident_split(4000, seed=31, true_temperature=1.0)  # already calibrated
    metrics = calibration_metrics(p_test, y_test, p_val, y_val)
    assert set(metrics) == {"ece", "nll", "brier", "temperature", "ece_after_temperature", "nll_after_temperature"}
    # Fitted on the test split, T would be about 2.5; on validation it is about 1.
    assert metrics["temperature"] == pytest.approx(fit_temperature(p_val, y_val))
    assert metrics["temperature"] == pytest.approx(1.0, rel=0.05)
    assert metrics["ece"] == pytest.approx(expected_calibration_error(p_test, y_test))
    assert metrics["nll"] == pytest.approx(negative_log_likelihood(p_test, y_test))
    assert metrics["brier"] == pytest.approx(brier_score(p_test, y_test))


def test_calibration_metrics_after_temperature_improve_on_overconfident_probabilities():
    p_test, y_test = overconfident_split(4000, seed=40)
    p_val, y_val = overconfident_split(4000, seed=41)
    metrics = calibration_metrics(p_test, y_test, p_val, y_val)
    assert metrics["ece_after_temperature"] < metrics["ece"] / 3
    assert metrics["nll_after_temperature"] < metrics["nll"]


def test_calibration_metrics_without_validation_leave_the_temperature_entries_none():
    p, y = overconfident_split(300, seed=50)
    metrics = calibration_metrics(p, y)
    assert metrics["temperature"] is metrics["ece_after_temperature"] is metrics["nll_after_temperature"] is None
    assert metrics["ece"] > 0


# ---- bad inputs -------------------------------------------------------------------------

GOOD_P = np.full((4, 3), 1 / 3)
GOOD_Y = np.array([0, 1, 2, 0])


@pytest.mark.parametrize("probabilities, y_true, bins, match", [
    (GOOD_P, GOOD_Y[:3], 15, "probabilities holds 4 rows but y_true holds 3"),
    (GOOD_P[0], GOOD_Y, 15, r"probabilities must be \(N, C\)"),
    (GOOD_P[:, :, None], GOOD_Y, 15, r"probabilities must be \(N, C\)"),
    (GOOD_P, GOOD_Y[:, None], 15, r"y_true must be \(N,\)"),
    (GOOD_P, [0, 1, 3, 0], 15, r"y_true\[2\] = 3 is outside \[0, 3\)"),
    (GOOD_P, [0, -1, 2, 0], 15, r"y_true\[1\] = -1 is outside"),
    (GOOD_P, GOOD_Y.astype(float), 15, "y_true must hold integer labels"),
    (np.log(GOOD_P), GOOD_Y, 15, "probabilities must be finite and in"),  # logits, not probabilities
    (np.where(GOOD_P > 0, np.nan, 0), GOOD_Y, 15, "probabilities must be finite and in"),
    (GOOD_P * 0.9, GOOD_Y, 15, "probabilities rows must sum to 1; row 0 sums to 0.9"),
    (GOOD_P, GOOD_Y, 0, "bins must be an integer >= 1"),
    (GOOD_P, GOOD_Y, 2.5, "bins must be an integer >= 1"),
])
def test_bad_inputs_raise_naming_the_argument(probabilities, y_true, bins, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(probabilities, y_true, bins)


@pytest.mark.parametrize("metric", [negative_log_likelihood, brier_score])
def test_nll_and_brier_check_their_inputs(metric):
    with pytest.raises(ValueError, match=r"y_true\[2\] = 3 is outside"):
        metric(GOOD_P, [0, 1, 3, 0])


def test_fit_temperature_names_the_validation_arguments():
    with pytest.raises(ValueError, match="probabilities_val holds 4 rows but y_val holds 3"):
        fit_temperature(GOOD_P, GOOD_Y[:3])


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_apply_temperature_refuses_a_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        apply_temperature(GOOD_P, temperature)


def test_calibration_metrics_refuses_half_a_validation_split_and_mismatched_classes():
    with pytest.raises(ValueError, match="give both probabilities_val and y_val"):
        calibration_metrics(GOOD_P, GOOD_Y, probabilities_val=GOOD_P)
    with pytest.raises(ValueError, match="probabilities_val has 2 classes but probabilities_test has 3"):
        calibration_metrics(GOOD_P, GOOD_Y, np.full((4, 2), 0.5), [0, 1, 1, 0])
    with pytest.raises(ValueError, match="probabilities_test holds 4 rows but y_test holds 3"):
        calibration_metrics(GOOD_P, GOOD_Y[:3])


# ---- the figure -------------------------------------------------------------------------


def test_plot_reliability_draws_one_line_per_name_with_its_ece(tmp_path):
    tables = {}
    for i, temperature in enumerate([1.0, 1.5, 2.5]):
        p, y = overconfident_split(2000, seed=60 + i, true_temperature=temperature)
        tables[f"T={temperature}"] = reliability_table(p, y)
    fig = plot_reliability(tables, title="synthetic")
    diagram = fig.axes[0]
    labels = [text.get_text() for text in diagram.get_legend().get_texts()]
    assert labels[0] == "perfect calibration"
    for name, table in tables.items():
        ece = expected_calibration_error(*overconfident_split(2000, seed=60 + list(tables).index(name),
                                                              true_temperature=float(name[2:])))
        assert f"{name} (ECE {ece:.2%})" in labels
    assert len(diagram.get_lines()) == 1 + len(tables)
    assert len(fig.axes) == 2  # the diagram and the share-of-images panel
    fig.savefig(tmp_path / "reliability.png", dpi=80)
    assert (tmp_path / "reliability.png").stat().st_size > 5000
    plt.close(fig)


def test_plot_reliability_draws_on_a_given_axes_and_refuses_no_tables():
    fig, ax = plt.subplots()
    assert plot_reliability({"a": reliability_table(HAND_PROBABILITIES, HAND_LABELS, bins=5)}, ax=ax) is fig
    assert len(ax.get_lines()) == 2
    # Empty bins are skipped, so the line joins the three bins that hold images.
    np.testing.assert_allclose(ax.get_lines()[1].get_xdata(), [.475, .70, .95])
    plt.close(fig)
    with pytest.raises(ValueError, match="tables is empty"):
        plot_reliability({})
