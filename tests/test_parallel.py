"""`make run-all WORKERS=2`: runs in parallel on a Dask LocalCluster, each with its share of the cores."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mnistlab.batch import run_all

pytestmark = pytest.mark.slow  # subprocesses, notebooks or Dask


def test_run_all_on_two_dask_workers(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    run_all(["slp", "mlp"], runs_dir=tmp_path, epochs=1, limit=300, workers=2, log_output=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(summary.model) == ["mlp", "slp"]
    for run_dir in tmp_path.glob("*lp-*"):
        assert (run_dir / "train_model.ipynb").is_file()
        assert json.loads((run_dir / "config.json").read_text())["config"]["threads"] >= 1
    timing = json.loads((tmp_path / "run_all_timing.json").read_text())
    assert (timing["workers"], timing["planned"], timing["trained"], timing["failed"]) == (2, 2, 2, 0)


def test_workers_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        run_all(["slp"], runs_dir=tmp_path, workers=0)
