"""Reliability: fuzzed IDX input, diverged/interrupted/resumed runs, incremental batches,
concurrent runs, reproducibility, runs that may not escape the runs root, safe loading."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnistlab.run_all import run_all
from mnistlab.config import make_config
from mnistlab.data import IMAGES_MAGIC, LABELS_MAGIC, DataError, parse_idx, read_idx_file
from mnistlab.results import load_model, load_runs
from mnistlab.runs import resolve_runs_dir
from mnistlab.train import rerun, train_and_evaluate

# ---- fuzzing the IDX reader -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=600), magic=st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC]))
def test_parse_idx_fuzz_raises_only_its_own_error(raw, magic):
    try:
        array = parse_idx(raw, magic, "fuzz")
    except DataError:
        return
    assert array.dtype == np.uint8 and array.nbytes <= len(raw)


@settings(max_examples=200, deadline=None)
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3), body=st.binary(max_size=300))
@example(dims=[0, 3_036_988_439, 3_037_012_561], body=b"")  # found by CI: no bytes, yet too big a shape for numpy
def test_parse_idx_fuzz_headers_never_allocate_beyond_the_file(dims, body):
    raw = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims) + body
    try:
        array = parse_idx(raw, IMAGES_MAGIC, "fuzz")
    except DataError:
        return
    assert array.shape == tuple(dims) and array.nbytes == len(body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400), compress=st.booleans(), cut=st.integers(0, 50))
def test_read_idx_file_fuzz(tmp_path, raw, compress, cut):
    path = tmp_path / "fuzz.gz"
    data = gzip.compress(raw) if compress else raw
    path.write_bytes(data[: max(len(data) - cut, 0)])
    try:
        read_idx_file(path, IMAGES_MAGIC)
    except DataError as e:
        assert "fuzz.gz" in str(e)


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    import mnistlab.data

    monkeypatch.setattr(mnistlab.data, "MAX_DECOMPRESSED_BYTES", 10_000)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(1_000_000)))
    with pytest.raises(DataError, match="bomb.gz: more than 10000 bytes once decompressed"):
        read_idx_file(path, IMAGES_MAGIC)


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.*0 bytes"):
        read_idx_file(path, LABELS_MAGIC)


# ---- runs that go wrong ---------------------------------------------------------------------


def test_diverging_run_is_recorded_and_not_counted(tmp_path, tiny_data):
    run_dir = train_and_evaluate(make_config("mlp", epochs=5, batch_size=32, learning_rate=10.0, verbose=0),
                                 tmp_path, data=tiny_data)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "diverged" and "lower learning_rate" in status["detail"]
    assert len(pd.read_csv(run_dir / "history.csv")) < 5  # stopped early
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.keras").exists()
    assert load_runs(tmp_path).status.tolist() == ["diverged"]
    assert not list((tmp_path / ".backup").iterdir())


@pytest.mark.slow
def test_deterministic_runs_are_identical(tmp_path, tiny_data):
    config = make_config("cnn", epochs=2, batch_size=32, deterministic=True, verbose=0)
    a = train_and_evaluate(config, tmp_path, run_name="a", data=tiny_data)
    b = train_and_evaluate(config, tmp_path, run_name="b", data=tiny_data)
    timing = ["epoch_seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(a / "history.csv").drop(columns=timing),
                                  pd.read_csv(b / "history.csv").drop(columns=timing))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (a, b)]
    for m in metrics:
        del m["train_seconds"], m["images_per_second"]
    assert metrics[0] == metrics[1]
    assert np.array_equal(np.load(a / "predictions.npz")["probabilities"],
                          np.load(b / "predictions.npz")["probabilities"])


# ---- where runs may go ------------------------------------------------------------------------


def test_runs_dir_the_user_names_is_honoured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_runs_dir("sub/dir") == tmp_path / "sub" / "dir"
    assert resolve_runs_dir("/elsewhere/runs") == Path("/elsewhere/runs")
    assert resolve_runs_dir(None) == tmp_path  # $MNISTLAB_RUNS_DIR, set by conftest


@pytest.mark.parametrize("run_name", ["../evil", "a/b", ".."])
def test_run_name_that_escapes_is_refused_before_loading_data(tmp_path, run_name):
    with pytest.raises(ValueError, match="not a plain folder name"):
        train_and_evaluate(make_config("slp", epochs=1), tmp_path / "runs", run_name=run_name)
    assert not (tmp_path / "runs").exists()


def test_unsafe_model_is_not_loaded(tmp_path):
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Lambda(lambda x: x * 2),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "model.keras")
    with pytest.raises(ValueError, match="(?i)unsafe|safe_mode"):
        load_model(tmp_path)


# ---- batches ------------------------------------------------------------------------------------


def test_run_all_is_incremental(tmp_path, real_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    run_all(["slp"], runs_dir=tmp_path, epochs=1, limit=300, log_output=False, corruptions=False)
    first = sorted(p.name for p in tmp_path.glob("slp-*"))
    run_all(["slp"], runs_dir=tmp_path, epochs=1, limit=300, log_output=False, corruptions=False)
    assert sorted(p.name for p in tmp_path.glob("slp-*")) == first
    assert f"completed as {first[0]}" in capsys.readouterr().out
    run_all(["slp"], runs_dir=tmp_path, epochs=1, limit=300, log_output=False, force=True, corruptions=False)
    assert len(list(tmp_path.glob("slp-*"))) == 2
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 1  # the same (variant, seed) counts once


def test_run_all_refuses_bad_parameters_before_training(tmp_path):
    for kwargs, message in [({"epochs": -1}, "epochs must be a positive integer"),
                            ({"limit": 10**6}, "limit must be a positive integer up to 55000"),
                            ({"limit": 100}, "batch_size=128 is larger than the 100 training images"),
                            ({"seed": 3}, "seed is set per run by run-all"),
                            ({"learning_rate": float("nan")}, "learning_rate must be finite")]:
        with pytest.raises(ValueError, match=message):
            run_all(["slp"], runs_dir=tmp_path / "runs", **kwargs)
    with pytest.raises(ValueError, match="No model named 'nope'"):
        run_all(["slp", "nope"], runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_concurrent_runs_do_not_collide(tmp_path, real_data_dir):
    import os

    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    command = [sys.executable, "-m", "mnistlab", "train", "--model", "slp", "--epochs", "2", "--limit", "2000",
               "--runs-dir", str(tmp_path)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    run_dirs = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(run_dirs) == 2
    runs = load_runs(tmp_path)
    assert runs.status.tolist() == ["completed", "completed"] and (runs.epochs_run == 2).all()


def test_rerun_repeats_a_run(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    config = make_config("slp", epochs=1, limit=500, seed=3, deterministic=True, verbose=0)
    original = train_and_evaluate(config, tmp_path)
    repeated = rerun(original, verbose=0)
    assert repeated != original and repeated.parent == tmp_path
    first, second = (json.loads((d / "config.json").read_text()) for d in (original, repeated))
    assert first["config_hash"] == second["config_hash"] and first["resolved"] == second["resolved"]
    accuracies = [json.loads((d / "metrics.json").read_text())["test_accuracy"] for d in (original, repeated)]
    assert accuracies[0] == accuracies[1]


def test_rerun_of_a_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="holds no config.json"):
        rerun(tmp_path)
