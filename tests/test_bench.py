"""`make bench` stays runnable (its figures are measurements, never asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench
from mnistlab.models import build_model


def test_flop_count_of_known_architectures():
    # slp: one 784x10 Dense = 7,840 multiply-adds; x2 FLOPs, x3 for the backward pass.
    assert bench.training_flops_per_image(build_model("slp")) == 3 * 2 * 7840
    # cnn's first convolution: 3x3x1x12 kernel on 28x28 outputs.
    cnn = build_model("cnn")
    first = 2 * 3 * 3 * 1 * 12 * 28 * 28
    assert bench.training_flops_per_image(cnn) > 3 * first


def test_seed_style_reference_uses_keras_layers():
    # The reference is the article's model: Keras' BatchNormalization, not mnistlab's fused one.
    import levers
    from mnistlab.models import FusedBatchNormalization

    layers = bench.seed_model("bn_cnn").layers
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in layers) == 4
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in layers)
    assert levers.applies("bn_cnn", "float32, Keras BatchNorm") and not levers.applies("cnn", "float32, Keras BatchNorm")


def test_epoch_timer_counts_the_steps_keras_runs():
    # steps_per_epoch=6 with steps_per_execution=4 on a repeated dataset trains 8 batches, not 6:
    # images/s must be computed from the counted steps.
    import numpy as np
    import tensorflow as tf

    x = np.zeros((64, 28, 28), np.float32)
    y = np.zeros(64, np.int64)
    model = build_model("slp")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=4)
    timer = bench.EpochTimer()
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(), epochs=2, steps_per_epoch=6,
              callbacks=[timer], verbose=0, shuffle=False)
    assert timer.steps == [8, 8] and len(timer.seconds) == 2


def test_bench_quick_run(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    out = tmp_path / "new" / "folder"  # created by the benchmark
    bench.main(["--models", "slp", "--steps", "5", "--repeats", "1", "--quick", "--out", str(out)])
    csv_name, md_name = bench.output_names()  # results-avx2.* under ONEDNN_MAX_CPU_ISA=AVX2
    table = pd.read_csv(out / csv_name)
    assert table.model.tolist() == ["slp"] and table.speedup[0] > 0
    assert table.cpu_model[0] and table.onednn_isa[0] and table.date[0] and table.precision[0] == "float32"
    assert table.batch_size[0] == 128 and "mnistlab_commit" in table
    # mnistlab with TensorFlow's oneDNN operations on; the article's code, in a child process, as
    # TensorFlow starts by default on this CPU.
    from mnistlab import machine

    assert table.onednn_ops_mnistlab[0] and table.onednn_ops_seed[0] == machine.tf_default_onednn_ops()
    assert "| model |" in (out / md_name).read_text()
    keras.backend.clear_session()


def test_output_names_follow_the_isa_cap(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert bench.output_names() == ("results.csv", "results.md")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert bench.output_names() == ("results-avx2.csv", "results-avx2.md")


def test_profile_shares_add_up(real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    from mnistlab.data import load_dataset

    shares = bench.profile_ops("cnn", load_dataset(limit=2000), steps=4)
    assert abs(sum(shares.values()) - 1) < 0.01
    assert shares["conv backward (filter)"] > 0 and shares["conv forward"] > 0
    keras.backend.clear_session()


def test_time_to_targets_reports_reached_and_missed_targets(real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    from mnistlab.data import load_dataset

    reached = bench.time_to_targets("slp", load_dataset(limit=2000), "mnistlab", (0.3, 0.6, 0.999))
    assert 1 <= reached[0.3][1] <= reached[0.6][1] <= 10 and 0 < reached[0.3][0] <= reached[0.6][0]
    assert reached[0.999][1] == 0 and reached[0.999][0] != reached[0.999][0]  # not in 10 epochs: nan
    keras.backend.clear_session()


@pytest.mark.slow
def test_levers_measure_in_their_own_process(real_data_dir, monkeypatch):
    import levers

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    assert levers.measure_in_process("slp", "float32, oneDNN off", steps=3) > 0  # a subprocess with the env var set
    rows = levers.conv_gflops(batch=2, repeats=1)
    assert [r["convolution"] for r in rows] == ["1->12 3x3 /1", "12->24 6x6 /2", "24->32 6x6 /2"]
    assert all(r["train_ms"] > 0 for r in rows)


def test_unknown_model_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "cnn,nope", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--models: No model named 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_article_code_is_timed_only_for_targets_mnistlab_reaches(tmp_path, monkeypatch):
    # The orchestration only: every measurement is replaced by a stand-in.
    calls = []

    def fake_time_to_targets(name, data, style, targets):
        calls.append((style, targets))
        if style == "mnistlab":
            return {0.99: (50.0, 2), 0.999: (float("nan"), 0)}
        return {target: (150.0, 5) for target in targets}

    monkeypatch.setattr(bench, "TARGETS", {"mlp": (0.99, 0.999)})
    monkeypatch.setattr(bench, "PROFILED", ())
    monkeypatch.setattr(bench, "time_to_targets", fake_time_to_targets)
    monkeypatch.setattr(bench, "throughput", lambda *args, **kwargs: 1000.0)
    monkeypatch.setattr(bench, "matmul_gflops", lambda **kwargs: 100.0)
    monkeypatch.setattr(bench, "load_dataset", lambda: None)
    monkeypatch.setattr(bench, "reference_figures", bench.measure_reference)  # in this process, patched
    bench.main(["--models", "mlp", "--out", str(tmp_path), "--no-peers"])
    assert calls == [("mnistlab", (0.99, 0.999)), ("seed", (0.99,))]
    row = pd.read_csv(tmp_path / bench.output_names()[0]).iloc[0]
    assert row["time_to_0.99_ratio"] == 3.0 and row["seed_epochs_to_0.99"] == 5
    assert row["seed_epochs_to_0.999"] == 0 and pd.isna(row["time_to_0.999_ratio"])


def test_op_types_of_onednn_and_fused_kernels_are_grouped():
    assert bench.op_type("_MklNativeConv2DBackpropFilterWithBias") == "Conv2DBackpropFilter"
    assert bench.op_type("_MklNativeFusedConv2D") == bench.op_type("_FusedConv2D") == "FusedConv2D"
    assert bench.op_type("_MklMatMul") == bench.op_type("MatMul") == "MatMul"
    assert bench.OP_GROUPS[bench.op_type("_MklNativeFusedBatchNormGradV3")] == "batch norm"


def test_time_to_mean_accuracy_stops_at_the_first_epoch_whose_mean_reaches_the_target():
    # Two seeds: accuracies per epoch (0.97, 0.985, 0.995) and (0.98, 0.99, 0.99); means 0.975,
    # 0.9875, 0.9925: 0.99 is reached at epoch 3, not at epoch 2 when one seed alone reached it.
    curves = [[0.97, 0.985, 0.995], [0.98, 0.99, 0.99]]
    seconds = [[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]]
    epochs_run = [[], []]

    def trainer(i):
        def fit_epoch(epoch):
            epochs_run[i].append(epoch)
            return seconds[i][epoch]
        return fit_epoch, lambda: curves[i][epochs_run[i][-1]]

    result = bench.time_to_mean_accuracy([trainer(0), trainer(1)], 0.99, epochs=5, images_per_epoch=100)
    assert result["epoch"] == 3 and result["seconds"] == pytest.approx((6.0 + 6.0) / 2)
    assert result["test_accuracy"] == pytest.approx(0.9925) and epochs_run == [[0, 1, 2], [0, 1, 2]]
    assert result["images_per_second"] == pytest.approx(600 / 12)
    # Never reached within the epochs: no seconds, no epoch, the last mean.
    epochs_run = [[], []]
    never = bench.time_to_mean_accuracy([trainer(0), trainer(1)], 0.999, epochs=3, images_per_epoch=100)
    assert never["epoch"] == 0 and never["seconds"] != never["seconds"] and never["test_accuracy"] == pytest.approx(0.9925)


def test_matmul_rate_of_the_precision_that_ran():
    from mnistlab import machine
    from mnistlab.config import make_config

    assert bench.matmul_gflops(n=256, repeats=2) > 0
    if machine.resolve(make_config("speedrun"))["precision"] == "mixed_bfloat16":  # bfloat16 units, not hidden
        assert bench.matmul_gflops(n=256, repeats=2, precision="mixed_bfloat16") > 0
