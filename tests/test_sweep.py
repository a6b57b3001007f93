"""Sweeps: grid expansion, search-space parsing and its errors, a grid and a search run end to end
through the notebooks (resumed when run again), pruned trials listed apart, and the
TensorBoard HParams records of runs."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from mnistlab.config import make_config
from mnistlab.results import latest_runs, load_runs
from mnistlab.sweep import grid_points, parse_grid, parse_search, run_sweep
from mnistlab.train import train_and_evaluate


def test_grid_is_the_full_factorial_in_the_order_given():
    grid = parse_grid(["learning_rate=0.001,0.01", "batch_size=64,128,256", "augment=True"])
    assert grid == {"learning_rate": [0.001, 0.01], "batch_size": [64, 128, 256], "augment": [True]}
    points = grid_points(grid)
    assert len(points) == 6 and points[0] == {"learning_rate": 0.001, "batch_size": 64, "augment": True}
    assert points[-1] == {"learning_rate": 0.01, "batch_size": 256, "augment": True}


@pytest.mark.parametrize("items, message", [
    (["learnin_rate=0.1,0.2"], "--grid 'learnin_rate': unknown config key"),
    (["seed=1,2"], "--grid 'seed': not a setting to sweep"),
    (["epochs=1,two"], "epochs must be an integer, got 'two'"),
    (["epochs"], "expected KEY=V1,V2"),
    (["epochs=2,2"], "a value is repeated"),
])
def test_bad_grids_are_refused(items, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(items)


def test_search_space():
    space = parse_search(["learning_rate=0.0001:0.1:log", "batch_size=32:256", "l2=0:0.01"])
    assert space["learning_rate"] == optuna.distributions.FloatDistribution(0.0001, 0.1, log=True)
    assert space["batch_size"] == optuna.distributions.IntDistribution(32, 256)
    assert space["l2"] == optuna.distributions.FloatDistribution(0.0, 0.01)


@pytest.mark.parametrize("items, message", [
    (["nope=1:2"], "--search 'nope': unknown config key"),
    (["optimizer=1:2"], "a str setting has no range; use --grid optimizer="),
    (["learning_rate=0.1:0.01"], "need LOW < HIGH"),
    (["learning_rate=0:0.1:log"], "need LOW < HIGH and LOW > 0 on a log scale"),
    (["learning_rate=0.1"], "expected KEY=LOW:HIGH"),
    (["learning_rate=0.1:1:cubic"], "expected KEY=LOW:HIGH"),
    (["batch_size=a:b"], "LOW and HIGH must be integers"),
])
def test_bad_search_spaces_are_refused(items, message):
    with pytest.raises(ValueError, match=message):
        parse_search(items)


def test_pruned_run_is_recorded_and_listed_apart(tmp_path, tiny_data):
    from mnistlab.callbacks import prune_on_validation

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    trial = study.ask()
    run_dir = train_and_evaluate(make_config("mlp", epochs=4, batch_size=32, verbose=0), tmp_path,
                                 data=tiny_data, callbacks=[prune_on_validation(trial)])
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "pruned" and "pruned at epoch 0" in status["detail"]
    assert len(pd.read_csv(run_dir / "history.csv")) == 1 and not (run_dir / "model.keras").exists()
    counted, not_counted = latest_runs(load_runs(tmp_path))
    assert counted.empty and not_counted.reason.tolist() == ["pruned"]


def test_hparams_group_the_seeds_of_a_variant(tmp_path, tiny_data):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    for seed, epochs in ((0, 1), (1, 1), (0, 2)):
        train_and_evaluate(make_config("slp", epochs=epochs, seed=seed, verbose=0), tmp_path, data=tiny_data)
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    groups = {}
    for run, content in multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        for tag, data in content.items():
            if tag == metadata.SESSION_START_INFO_TAG:
                info = metadata.parse_session_start_info_plugin_data(data)
                groups[run.split("/")[0]] = (info.group_name, info.hparams["epochs"].number_value)
    assert len(groups) == 3  # every run has its record
    records = {run: json.loads((tmp_path / run / "config.json").read_text()) for run in groups}
    for run, (group, epochs) in groups.items():
        assert group == records[run]["variant_hash"] and epochs == records[run]["config"]["epochs"]
    assert len({group for group, _ in groups.values()}) == 2  # two seeds of one variant share a group


@pytest.mark.slow
def test_grid_sweep_end_to_end_and_resumed(tmp_path, real_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    # On a Dask LocalCluster of two workers, as `make sweep` runs, each with its share of the cores.
    args = dict(grid=["learning_rate=0.001,0.01"], epochs=1, limit=1000, runs_dir=tmp_path, log_output=False,
                workers=2)
    folder = run_sweep("slp", **args)
    assert folder == tmp_path / "sweeps" / "slp-grid"
    table = pd.read_csv(folder / "sweep.csv")
    # The grid's 0.001 is the recipe's own setting: run once, named "default".
    assert sorted(table.point) == ["default", "learning_rate=0.01"] and (table.status == "completed").all()
    for name in ("study.db", "sweep_report.ipynb", "parallel_coordinates.png"):
        assert (folder / name).is_file(), name
    runs = sorted(p.name for p in folder.glob("slp-*"))
    run_sweep("slp", **args)  # run again: everything is skipped
    assert sorted(p.name for p in folder.glob("slp-*")) == runs
    assert capsys.readouterr().out.count(": completed as") == 2
    assert all(json.loads((folder / run / "config.json").read_text())["resolved"]["threads"] == 1 for run in runs)


@pytest.mark.slow
def test_search_sweep_resumes_a_trial_left_running(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    folder = tmp_path / "sweeps" / "s"
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    stale = optuna.create_study(study_name="s", storage=storage, direction="maximize").ask(
        {"learning_rate": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)})
    stale.set_user_attr("run", "slp-killed-before-it-finished")  # the client died: the trial stays RUNNING
    run_sweep("slp", search=["learning_rate=0.001:0.1:log"], trials=1, name="s", epochs=1, limit=1000,
              runs_dir=tmp_path, log_output=False)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    states = [t.state for t in trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].params == trials[0].params  # the failed trial's setting was tried again
    table = pd.read_csv(folder / "sweep.csv")
    assert (table.status == "completed").sum() == 2  # the default point and the trial
