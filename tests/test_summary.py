"""The console's headline under the comparison table."""

from __future__ import annotations

import pandas as pd

from mnistlab.summary import headline


def _table(rows):
    return pd.DataFrame(rows, columns=["variant", "runs", "mean", "ci_low", "ci_high", "train_seconds", "versus_best"])


def test_headline_names_the_best_what_it_beats_and_the_fastest_close_to_it():
    table = _table([("bn_cnn", 3, 0.9949, 0.9939, 0.9959, 506.8, "best"),
                    ("bn_cnn[recipe=mnistlab]", 3, 0.9942, 0.9932, 0.9952, 273.1, "not significantly different"),
                    ("slp", 3, 0.9255, 0.9238, 0.9272, 7.3, "worse on every seed")])
    text = headline(table)
    assert text.startswith("Best: bn_cnn, test accuracy 0.9949 (95% CI 0.9939-0.9959) over 3 run(s)")
    assert "better on every seed than slp." in text
    assert "Fastest within 0.001 of it: bn_cnn[recipe=mnistlab] (273.1 s per run)." in text


def test_headline_of_a_single_variant_compares_nothing():
    text = headline(_table([("speedrun", 3, 0.9914, 0.9889, 0.9940, 19.8, "best")]))
    assert text == "One variant: speedrun, test accuracy 0.9914 (95% CI 0.9889-0.9940) over 3 run(s), 19.8 s of training per run."
