"""`make bench`: training throughput of mnistlab against the seed article's own pipeline, as a
fraction of the machine's float32 matmul rate, time to a validation-accuracy target, and the
peak memory of a run. A benchmark, not a test: it prints measured ratios and writes
bench/results.csv and bench/results.md.

    .venv/bin/python bench/bench.py [--models cnn,bn_cnn] [--steps 64] [--repeats 3] [--quick]

Throughput is steady state: each configuration fits `repeats + 1` epochs of `steps` batches
and the first (tracing, warm-up) is dropped; the median of the rest is reported. The
"seed-style reference" is built exactly as ../shared/seeds/getting-the-mnist-five-models.txt
does: float64 arrays `x / 255.0` into its `create_training_ds` (cache, shuffle 5000, repeat,
batch 128 drop_remainder, prefetch), the same architecture and batch size, default compile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mnistlab import machine
from mnistlab.callbacks import ShuffleEpoch
from mnistlab.config import make_config
from mnistlab.data import load_dataset
from mnistlab.models import build_model
from mnistlab.pipeline import create_training_ds
from mnistlab.recipes import MODEL_NAMES
from mnistlab.train import build, compile_model, dtype_policy

BENCH_DIR = Path(__file__).resolve().parent
TARGETS = {"mlp": 0.975, "cnn": 0.985, "bn_cnn": 0.990}  # validation accuracy to reach
# Keras' own layers where mnistlab's builder swaps in a faster equivalent (deep_bn_cnn has no
# article: its reference is the same network with Keras' BatchNormalization, in the seed's pipeline).
SEED_BUILD_ARGS = {"bn_cnn": {"fused_batch_norm": False}, "deep_bn_cnn": {"fused_batch_norm": False}}


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matrix-multiply rate (numpy, all cores), median of `repeats`."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def training_flops_per_image(model: keras.Model) -> float:
    """Multiply-adds of Dense and Conv2D layers, x2 for FLOPs, x3 for forward + backward."""
    flops = 0.0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            flops += 2 * kh * kw * cin * cout * h * w
    return 3 * flops


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def seed_model(model_name: str) -> keras.Model:
    """The architecture as the article builds it: float32, Keras' own layers, inputs scaled
    before the model (no Rescaling layer)."""
    with dtype_policy("float32"):
        return build_model(model_name, normalize=False, **SEED_BUILD_ARGS.get(model_name, {}))


def seed_training_ds(x, y, batch_size=128):
    """The article's create_training_ds, verbatim in effect, on its float64 arrays."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.cache()
    ds = ds.shuffle(buffer_size=5000)
    ds = ds.repeat()
    ds = ds.batch(batch_size=batch_size, drop_remainder=True)
    return ds.prefetch(buffer_size=tf.data.AUTOTUNE)


class EpochTimer(keras.callbacks.Callback):
    """Seconds and optimizer steps of each epoch. The steps are counted, not assumed: with
    steps_per_execution=k Keras runs whole executions of k batches, so `steps_per_epoch=100`
    on a repeated dataset trains 128 batches when k is 32."""

    def on_train_begin(self, logs=None):
        self.seconds, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._start_step = int(self.model.optimizer.iterations)

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.steps.append(int(self.model.optimizer.iterations) - self._start_step)


def throughput(model_name: str, data, style: str, steps: int, repeats: int, jit_compile=False,
               build_args: dict | None = None, **overrides) -> float:
    """Steady-state training images/s of `model_name` with the "mnistlab" or "seed" pipeline.
    `overrides` (batch_size, precision, steps_per_execution) change mnistlab's config;
    `build_args` its builder's arguments (e.g. fused_batch_norm=False)."""
    keras.utils.set_random_seed(0)
    config = make_config(model_name, **overrides)
    batch = config.batch_size
    if style == "seed":
        model = seed_model(model_name)
        ds = seed_training_ds(data.x_train / 255.0, data.y_train, batch)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model = build(config, machine.resolve(config)["precision"], **(build_args or {}))
        ds = create_training_ds(data.x_train, data.y_train, batch, seed=0).repeat()
        compile_model(model, config, steps_per_epoch=steps)
        if jit_compile:
            model.jit_compile = True
    timer = EpochTimer()
    model.fit(ds, epochs=repeats + 1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return statistics.median(n * batch / seconds for n, seconds in zip(timer.steps[1:], timer.seconds[1:]))


def time_to_target(model_name: str, data, style: str, target: float, max_epochs: int = 10) -> tuple[float, int]:
    """Seconds of training (validation excluded) until val_accuracy >= target, and the epoch;
    (nan, 0) if not reached in `max_epochs`. mnistlab's recipe against the seed's."""
    keras.utils.set_random_seed(0)
    # The article's recipe (on the same 55,000 training images) against mnistlab's.
    used = make_config(model_name, recipe="article" if style == "seed" else "mnistlab", validation_size=5000)
    timer = EpochTimer()
    steps_per_epoch = len(data.x_train) // used.batch_size
    if style == "seed":
        model = seed_model(model_name)
        ds = seed_training_ds(data.x_train / 255.0, data.y_train, used.batch_size)
        steps = steps_per_epoch
        compile_model(model, used, steps_per_epoch, steps_per_execution=1)
        x_val = data.x_val.astype(np.float32) / 255.0
    else:
        # As mnistlab trains: one pass over the data per epoch (with steps_per_execution > 1, a
        # steps_per_epoch on a repeated dataset would round each epoch up to whole executions).
        model = build(used, machine.resolve(used)["precision"])
        epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
        ds = create_training_ds(data.x_train, data.y_train, used.batch_size, seed=0, epoch=epoch_variable)
        steps = None
        compile_model(model, used, steps_per_epoch)
        x_val = data.x_val
    callbacks = [] if style == "seed" else [ShuffleEpoch(epoch_variable)]
    elapsed = 0.0
    for epoch in range(min(max_epochs, used.epochs)):  # a schedule is defined over its recipe's epochs
        model.fit(ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, callbacks=callbacks + [timer],
                  verbose=0)
        elapsed += timer.seconds[-1]
        _, accuracy = model.evaluate(x_val, data.y_val, batch_size=512, verbose=0)
        if accuracy >= target:
            return elapsed, epoch + 1
    return float("nan"), 0


def peak_memory_mib(model_name: str, epochs: int = 1) -> float:
    """Peak resident memory (MiB) of `python -m mnistlab train`, measured by a wrapper process
    whose only child is the run (getrusage of its children)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=BENCH_DIR.parent / "runs") as runs_dir:
        command = [sys.executable, "-m", "mnistlab", "train", "--model", model_name, "--epochs", str(epochs),
                   "--runs-dir", runs_dir]
        wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024  # Linux reports KiB


def to_markdown(table: pd.DataFrame) -> str:
    cells = [[str(v) for v in table.columns]] + [["" if pd.isna(v) else str(v) for v in row]
                                                  for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + " --- |" * len(table.columns), *lines[1:]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (default: the whole zoo)")
    parser.add_argument("--steps", type=int, default=64,
                        help="batches per timed epoch (default: 64, a whole number of executions of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up (default: 3)")
    parser.add_argument("--quick", action="store_true", help="skip time-to-accuracy and memory (default: run them)")
    parser.add_argument("--out", default=str(BENCH_DIR), help="folder for results.csv and results.md (default: bench/)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    models = [m.strip() for m in args.models.split(",")]
    data = load_dataset()
    peak_gflops = matmul_gflops()
    print(f"float32 matmul (numpy, 2048x2048): {peak_gflops:.0f} GFLOP/s", flush=True)
    rows = []
    for name in models:
        flops = training_flops_per_image(build_model(name))
        ours = throughput(name, data, "mnistlab", args.steps, args.repeats)
        seed = throughput(name, data, "seed", args.steps, args.repeats)
        row = {"model": name, "mnistlab_images_per_second": round(ours), "seed_images_per_second": round(seed),
               "speedup": round(ours / seed, 2), "train_mflop_per_image": round(flops / 1e6, 2),
               "gflops": round(flops * ours / 1e9, 1), "fraction_of_matmul": round(flops * ours / 1e9 / peak_gflops, 3)}
        if name in ("cnn", "bn_cnn"):
            row["xla_images_per_second"] = round(throughput(name, data, "mnistlab", args.steps, args.repeats,
                                                            jit_compile=True))
        print(row, flush=True)
        rows.append(row)
    if not args.quick:
        for name, target in TARGETS.items():
            if name not in models:
                continue
            row = next(r for r in rows if r["model"] == name)
            for style in ("mnistlab", "seed"):
                seconds, epoch = time_to_target(name, data, style, target)
                row[f"{style}_seconds_to_{target}"] = round(seconds, 1)
                row[f"{style}_epochs_to_{target}"] = epoch
            print(name, {k: v for k, v in row.items() if "_to_" in k}, flush=True)
        for name in ("slp", "bn_cnn"):
            if name in models:
                next(r for r in rows if r["model"] == name)["peak_rss_mib_1_epoch"] = round(peak_memory_mib(name))
    table = pd.DataFrame(rows)
    machine_info = machine.describe_machine()
    from mnistlab.runs import environment_info

    for key, value in {"cpu_model": machine_info["cpu_model"], "onednn_isa": machine_info["onednn_isa"],
                       "onednn_max_cpu_isa": machine_info["onednn_max_cpu_isa"], "date": str(datetime.date.today()),
                       "mnistlab_commit": environment_info()["git_commit"]}.items():
        table[key] = value
    table.to_csv(out / "results.csv", index=False)
    run_all = BENCH_DIR.parent / "runs" / "run_all_timing.json"
    header = (f"Measured {datetime.date.today()} on {machine_info['cpu_model']} (oneDNN ISA {machine_info['onednn_isa']}) with {len(os.sched_getaffinity(0))} "
              f"cores, TensorFlow {tf.__version__}; float32 matmul rate {peak_gflops:.0f} GFLOP/s; "
              f"{args.steps} batches x {args.repeats} timed epochs per throughput figure.")
    if run_all.is_file():
        timing = json.loads(run_all.read_text())
        header += f" Last `make run-all`: {timing['seconds']:.0f} s for {timing['runs']} runs ({timing['finished']})."
    (out / "results.md").write_text(header + "\n\n" + to_markdown(table) + "\n")
    print("\n" + header + "\n\n" + to_markdown(table))


if __name__ == "__main__":
    main()
