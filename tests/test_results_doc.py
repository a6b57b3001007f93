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
