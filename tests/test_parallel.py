"""`make run-all WORKERS=N`: the parameter's checks (a LocalCluster of two workers runs in tests/test_sweep.py)."""

from __future__ import annotations

import pytest

from mnistlab.run_all import run_all


def test_workers_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        run_all(["slp"], runs_dir=tmp_path, workers=0)
