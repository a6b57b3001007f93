"""run-all and sweeps on a Dask cluster started apart: a `dask scheduler` and `dask worker`
processes on loopback whose environment differs from the client's (no MNISTLAB_* variables,
another working directory), as on a user's cluster."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from mnistlab.run_all import run_all
from mnistlab.cluster import ProcessCluster
from mnistlab.data import PROJECT_DIR
from mnistlab.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture
def client_env(tmp_path, real_data_dir, monkeypatch):
    """The client's own environment: its data folder and a runs folder the workers never heard of."""
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    runs_dir = tmp_path / "shared-runs"
    runs_dir.mkdir()
    return runs_dir


def test_run_all_and_a_sweep_on_a_cluster_started_apart(tmp_path, client_env, capsys):
    # A model file only the client has: shipped to the workers, which train from their copy.
    client_only = tmp_path / "client-only"
    client_only.mkdir()
    models_file = client_only / "lenet5.py"
    models_file.write_text((PROJECT_DIR / "examples" / "lenet5.py").read_text())
    models = ["slp", "mlp", "lenet5"]
    # Two workers: one as it should be, one whose own data folder is empty.
    with ProcessCluster(tmp_path, [{}, {"MNISTLAB_DATA_DIR": str(tmp_path / "no-data-here")}]) as cluster:
        compare = run_all(models, runs_dir=client_env, epochs=1, limit=3000, scheduler=cluster.address,
                          corruptions=False, log_output=False, models_from=[str(models_file)])
        timing = json.loads((client_env / "run_all_timing.json").read_text())
        assert (timing["planned"], timing["skipped"], timing["trained"], timing["failed"]) == (3, 0, 3, 0)
        assert timing["comparison"] == "completed" and compare.is_file()
        assert sorted(pd.read_csv(client_env / "summary.csv").model) == ["lenet5", "mlp", "slp"]
        out, err = capsys.readouterr()
        # The worker without data is named once, with the fix, and gets no task; the other runs all three.
        assert err.count("cannot be used") == 1 and "no-data-here" in err and "Dataset file not found" in err
        assert "1 of 2 workers can run tasks" in out and out.count("finished ") == 3
        (run,) = client_env.glob("lenet5-*")
        origin = json.loads((run / "config.json").read_text())["model"]["origin"]
        assert origin["given"] == str(models_file) and origin["path"] != str(models_file)
        assert "mnistlab-models" in origin["path"]  # the worker's copy
        assert origin["sha256"] == hashlib.sha256(models_file.read_bytes()).hexdigest()
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        # Run again: all are skipped, nothing is trained twice.
        run_all(models, runs_dir=client_env, epochs=1, limit=3000, scheduler=cluster.address, corruptions=False,
                log_output=False, models_from=[str(models_file)])
        timing = json.loads((client_env / "run_all_timing.json").read_text())
        assert (timing["planned"], timing["skipped"], timing["trained"]) == (3, 3, 0)

        folder = run_sweep("slp", search=["learning_rate=0.001:0.1:log"], trials=1, epochs=1, limit=1000,
                           runs_dir=client_env, scheduler=cluster.address, log_output=False)
        table = pd.read_csv(folder / "sweep.csv")
        assert (table.status == "completed").sum() == 2  # the recipe's point and one trial
