"""`make bench`: training throughput of mnistlab against the seed article's own pipeline, as a
fraction of the machine's matmul rate in the precision that ran (numpy float32; TensorFlow's
bfloat16 matmul for mixed_bfloat16); where a convolutional model's training step spends its time
(per-op shares from TensorFlow's profiler); time to each floor's validation accuracy with
mnistlab's recipe against the article's recipe and code; the peak memory of a run; and the
recipes users copy instead (PEERS: keras-io's convnet, TensorFlow's quickstart MLP) against
mnistlab's, timed to the same mean test accuracy over three seeds in the same run. A
benchmark, not a test: it prints measured ratios and writes bench/results.csv and
bench/results.md, or bench/results-avx2.* when ONEDNN_MAX_CPU_ISA=AVX2 is set (`make bench
ISA=avx2`), each row naming the CPU, oneDNN's ISA, precision, batch size, date and commit.

    .venv/bin/python bench/bench.py [--models mlp,cnn,bn_cnn,speedrun] [--steps 64] [--repeats 3] [--quick]

Throughput is steady state: each configuration fits `repeats + 1` epochs of `steps` batches
and the first (tracing, warm-up) is dropped; the median of the rest is reported. The
"seed-style reference" is built exactly as ../shared/seeds/getting-the-mnist-five-models.txt
does: float64 arrays `x / 255.0` into its `create_training_ds` (cache, shuffle 5000, repeat,
batch 128 drop_remainder, prefetch), the same architecture and batch size, default compile.
It runs in a child process whose TensorFlow starts as it would for the article's reader
(TF_ENABLE_ONEDNN_OPTS at TensorFlow's default for this CPU: off below AVX-512 VNNI), while
mnistlab runs with its oneDNN operations on; `seed_onednn_images_per_second` is the reference
with them on too, which separates what the switch gives from what mnistlab's code gives.
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
import warnings
from pathlib import Path

# The console shows results: TensorFlow's C++ info and warning lines (CUDA probing, the seed
# pipeline's partially read cache, profiler sessions) stay off it. Set before TensorFlow starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mnistlab  # noqa: F401  (before TensorFlow: it sets TensorFlow's oneDNN switch)
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
from mnistlab.registry import get_entry
from mnistlab.train import build, compile_model, dtype_policy

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_MODELS = "mlp,cnn,bn_cnn,speedrun"
# Validation accuracies to reach: each model's floor, and for bn_cnn also 0.990 (its 0.994 floor
# is a test accuracy; the validation split is harder, and the article's recipe may never reach it).
TARGETS = {"mlp": (get_entry("mlp").floor,), "cnn": (get_entry("cnn").floor,),
           "bn_cnn": (0.990, get_entry("bn_cnn").floor), "speedrun": (0.990,)}
# What a user copies instead of mnistlab, written here from each page's documented recipe (not its
# code), and which of mnistlab's recipes each is set against, to which test accuracy:
# - keras-io's "Simple MNIST convnet" (https://keras.io/examples/vision/mnist_convnet/): Conv 32 3x3
#   ReLU -> max-pool 2 -> Conv 64 3x3 ReLU -> max-pool 2 -> Flatten -> Dropout 0.5 -> Dense 10
#   softmax; Adam, categorical cross-entropy, batch 128, 15 epochs, a tenth held out.
# - TensorFlow's beginner quickstart (https://www.tensorflow.org/tutorials/quickstart/beginner):
#   Flatten -> Dense 128 ReLU -> Dropout 0.2 -> Dense 10 (logits); Adam, sparse categorical
#   cross-entropy from logits, Keras' default batch of 32, 5 epochs.
# Both sides train PEER_SEEDS seeds in lockstep, epoch by epoch, on the same 55,000 training images,
# and are timed to the first epoch at which their mean accuracy on the 10,000 test images reaches
# the target (the test set only measures here: nothing is chosen on it).
PEERS = {"keras_io_convnet": {"against": "speedrun_one_epoch", "target": 0.990, "epochs": 15, "batch_size": 128},
         "tf_quickstart_mlp": {"against": "mlp", "target": get_entry("mlp").floor, "epochs": 5, "batch_size": 32}}
PEER_SEEDS = 3
PROFILED = ("cnn", "bn_cnn")
# Op types of a training step, grouped for the profile's table (names as `op_type` normalises them).
OP_GROUPS = {"Conv2DBackpropFilter": "conv backward (filter)", "Conv2DBackpropInput": "conv backward (input)",
             "FusedConv2D": "conv forward", "Conv2D": "conv forward",
             "FusedBatchNormV3": "batch norm", "FusedBatchNormGradV3": "batch norm",
             "MatMul": "dense (matmul)", "FusedMatMul": "dense (matmul)", "BiasAddGrad": "bias gradients"}


def op_type(name: str) -> str:
    """A TensorFlow op type without the prefixes and suffix of its oneDNN and fused forms:
    "_MklNativeConv2DBackpropFilterWithBias" -> "Conv2DBackpropFilter", "_FusedConv2D" -> "FusedConv2D"."""
    for prefix in ("_MklNative", "_Mkl", "_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removesuffix("WithBias")


# Keras' own layers where mnistlab's builder swaps in a faster equivalent (deep_bn_cnn has no
# article: its reference is the same network with Keras' BatchNormalization, in the seed's pipeline).
SEED_BUILD_ARGS = {"bn_cnn": {"fused_batch_norm": False}, "deep_bn_cnn": {"fused_batch_norm": False}}


def matmul_gflops(n: int = 2048, repeats: int = 10, precision: str = "float32") -> float:
    """The machine's matrix-multiply rate (GFLOP/s, all cores, median of `repeats`) in the
    precision a recipe computes in: float32 with numpy; "mixed_bfloat16" as bfloat16 matrices
    through TensorFlow (oneDNN's bfloat16 kernels, the units mixed_bfloat16 training uses)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    if precision == "mixed_bfloat16":
        a, b = tf.constant(a, dtype=tf.bfloat16), tf.constant(b, dtype=tf.bfloat16)
        multiply = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    else:
        multiply = lambda: a @ b  # noqa: E731
    multiply()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(multiply())
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
    model.fit(ds, epochs=repeats + 1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return statistics.median(n * batch / seconds for n, seconds in zip(timer.steps[1:], timer.seconds[1:]))


def trainer(model_name: str, data, seed: int = 0, style: str = "mnistlab", on: str = "test"):
    """(fit_epoch, accuracy, epochs) of `model_name` at `seed` on the 55,000 training images:
    mnistlab's recipe trained as mnistlab trains it ("mnistlab": its pipeline, precision, schedule
    over the recipe's epochs, a reshuffle per epoch), or the article's recipe, code and pipeline
    ("seed"). fit_epoch(epoch) trains that epoch and returns its seconds (evaluation excluded);
    accuracy() is the model's accuracy on the split `on` ("val" or "test") now; epochs: the
    recipe's."""
    keras.utils.set_random_seed(seed)
    config = make_config(model_name, seed=seed, recipe="article" if style == "seed" else "mnistlab",
                         validation_size=5000)
    steps_per_epoch = len(data.x_train) // config.batch_size
    timer = EpochTimer()
    x_eval, y_eval = (data.x_val, data.y_val) if on == "val" else (data.x_test, data.y_test)
    if style == "seed":
        model = seed_model(model_name)
        ds = seed_training_ds(data.x_train / 255.0, data.y_train, config.batch_size)
        steps, callbacks = steps_per_epoch, [timer]
        compile_model(model, config, steps_per_epoch, steps_per_execution=1)
        x_eval = x_eval.astype(np.float32) / 255.0
    else:
        # As mnistlab trains: one pass over the data per epoch (with steps_per_execution > 1, a
        # steps_per_epoch on a repeated dataset would round each epoch up to whole executions).
        model = build(config, machine.resolve(config)["precision"])
        epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
        ds = create_training_ds(data.x_train, data.y_train, config.batch_size, seed=seed, epoch=epoch_variable)
        steps, callbacks = None, [ShuffleEpoch(epoch_variable), timer]
        compile_model(model, config, steps_per_epoch)

    def fit_epoch(epoch: int) -> float:  # a schedule is defined over its recipe's epochs
        model.fit(ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, callbacks=callbacks,
                  shuffle=False, verbose=0)
        return timer.seconds[-1]

    return fit_epoch, lambda: model.evaluate(x_eval, y_eval, batch_size=1000, verbose=0)[1], config.epochs


def time_to_targets(model_name: str, data, style: str, targets: tuple[float, ...]) -> dict[float, tuple[float, int]]:
    """For each validation-accuracy target: (seconds of training until val_accuracy first >= it,
    validation excluded; the epoch), or (nan, 0) if the recipe's epochs end first. One run at
    seed 0 of `trainer(model_name, data, 0, style, on="val")`; stops once every target is reached."""
    fit_epoch, accuracy, epochs = trainer(model_name, data, 0, style, on="val")
    reached: dict[float, tuple[float, int]] = {}
    elapsed = 0.0
    for epoch in range(epochs):
        elapsed += fit_epoch(epoch)
        value = accuracy()
        for target in targets:
            if value >= target and target not in reached:
                reached[target] = (elapsed, epoch + 1)
        if len(reached) == len(targets):
            break
    return {target: reached.get(target, (float("nan"), 0)) for target in targets}


def robustness_seconds(model_name: str, images: int = 4000) -> float:
    """Seconds of one run's robustness evaluation as run-all makes it (mnistlab.robustness): the 15
    MNIST-C-style corruptions, the first `images` of each, through the model (the recipe's
    precision), after a warm-up batch; the model's load (about a second) not included."""
    config = make_config(model_name)
    model = build(config, machine.resolve(config)["precision"])
    x = np.random.default_rng(0).integers(0, 256, (images, 28, 28), dtype=np.uint8)
    model.predict(x[:1000], batch_size=1000, verbose=0)
    start = time.perf_counter()
    for _ in range(15):
        model.predict(x, batch_size=1000, verbose=0)
    return time.perf_counter() - start


def peer_model(name: str) -> keras.Model:
    """A peer recipe's network (PEERS), compiled as its page compiles it: inputs (batch, 28, 28)
    float32 in [0, 1]."""
    from keras import layers

    if name == "keras_io_convnet":
        model = keras.Sequential([
            keras.Input(shape=(28, 28)), layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"), layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"), layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        return model  # (the page one-hot encodes its labels for categorical cross-entropy: the same loss)
    model = keras.Sequential([keras.Input(shape=(28, 28)), layers.Flatten(), layers.Dense(128, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def time_to_mean_accuracy(trainers: list, target: float, epochs: int, images_per_epoch: int) -> dict:
    """Train one model per seed in lockstep, epoch by epoch, and stop at the first epoch at which
    the mean of their test accuracies reaches `target`. `trainers`: (fit_epoch(epoch) -> training
    seconds of that epoch, evaluation excluded; test_accuracy() -> float) per seed. Returns
    {"seconds": mean training seconds to that epoch (nan if `epochs` end first), "epoch",
    "test_accuracy": the mean then (or at the last epoch), "accuracies": per seed,
    "images_per_second": images trained / training seconds, over every seed}."""
    seconds = [0.0] * len(trainers)
    for epoch in range(epochs):
        accuracies = []
        for i, (fit_epoch, test_accuracy) in enumerate(trainers):
            seconds[i] += fit_epoch(epoch)
            accuracies.append(float(test_accuracy()))
        mean = statistics.fmean(accuracies)
        if mean >= target or epoch == epochs - 1:
            reached = mean >= target
            return {"seconds": statistics.fmean(seconds) if reached else float("nan"), "epoch": epoch + 1 if reached else 0,
                    "test_accuracy": mean, "accuracies": accuracies,
                    "images_per_second": images_per_epoch * (epoch + 1) * len(trainers) / sum(seconds)}
    raise ValueError("epochs must be at least 1")


def peer_trainer(name: str, data, seed: int):
    """(fit_epoch, test_accuracy) for `time_to_mean_accuracy`: a peer recipe (PEERS) at `seed`,
    as its page trains it (float32 arrays in [0, 1], Keras' fit on arrays, TensorFlow's defaults)."""
    keras.utils.set_random_seed(seed)
    peer = PEERS[name]
    x_train, x_test = data.x_train.astype(np.float32) / 255.0, data.x_test.astype(np.float32) / 255.0
    model = peer_model(name)
    timer = EpochTimer()

    def fit_epoch(epoch: int) -> float:
        model.fit(x_train, data.y_train, batch_size=peer["batch_size"], initial_epoch=epoch, epochs=epoch + 1,
                  callbacks=[timer], verbose=0)
        return timer.seconds[-1]

    return fit_epoch, lambda: model.evaluate(x_test, data.y_test, batch_size=1000, verbose=0)[1]


def measure_peer(name: str) -> dict:
    """A peer recipe's `time_to_mean_accuracy` to its target over PEER_SEEDS seeds, in this process
    (the child of `peer_figures`), with whether TensorFlow's oneDNN operations ran."""
    data = load_dataset()
    peer = PEERS[name]
    measured = time_to_mean_accuracy([peer_trainer(name, data, seed) for seed in range(PEER_SEEDS)],
                                     peer["target"], peer["epochs"], len(data.x_train))
    return {"onednn_ops": machine.onednn_ops_running(), **measured}


def peer_figures(name: str) -> dict:
    """`measure_peer` in a child process whose TensorFlow starts with its own defaults (as a user
    who copied the page runs it)."""
    import tempfile

    env = {**os.environ, machine.ONEDNN_OPTS_VARIABLE: "1" if machine.tf_default_onednn_ops() else "0"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        subprocess.run([sys.executable, __file__, "--peer", name, "--out", str(out)], env=env, check=True)
        return json.loads(out.read_text())


def peer_row(peer: str, data, matmul_rate) -> dict:
    """One PEERS comparison, measured now: mnistlab's recipe over PEER_SEEDS seeds in this process,
    then the peer in its child process right after (the machine's speed drifts). `matmul_rate`:
    precision -> GFLOP/s. The ratio is the peer's seconds / mnistlab's."""
    spec = PEERS[peer]
    name = spec["against"]
    config = make_config(name)
    precision = machine.resolve(config)["precision"]
    ours = time_to_mean_accuracy([trainer(name, data, seed)[:2] for seed in range(PEER_SEEDS)], spec["target"],
                                 config.epochs, len(data.x_train))
    theirs = peer_figures(peer)
    flops = training_flops_per_image(build_model(name))
    gflops = flops * ours["images_per_second"] / 1e9
    row = {"peer": peer, "against": name, "target_test_accuracy": spec["target"], "seeds": PEER_SEEDS,
           "peer_seconds": round(theirs["seconds"], 1), "peer_epochs": theirs["epoch"],
           "peer_test_accuracy": round(theirs["test_accuracy"], 4),
           "mnistlab_seconds": round(ours["seconds"], 1), "mnistlab_epochs": ours["epoch"],
           "mnistlab_test_accuracy": round(ours["test_accuracy"], 4),
           "mnistlab_accuracies": " ".join(f"{a:.4f}" for a in ours["accuracies"]),
           "ratio": round(theirs["seconds"] / ours["seconds"], 2) if ours["epoch"] and theirs["epoch"] else None,
           "precision": precision, "mnistlab_images_per_second": round(ours["images_per_second"]),
           "mnistlab_gflops": round(gflops, 1), "matmul_gflops": round(matmul_rate(precision)),
           "fraction_of_matmul": round(gflops / matmul_rate(precision), 3),
           "peer_images_per_second": round(theirs["images_per_second"]), "peer_onednn_ops": theirs["onednn_ops"]}
    print(f"{peer} against {name}: mean test accuracy {spec['target']} over {PEER_SEEDS} seeds after "
          + (f"{row['mnistlab_seconds']} s" if ours["epoch"] else f"never ({row['mnistlab_test_accuracy']})")
          + f" of training with mnistlab's recipe, {row['peer_seconds']} s with the peer's: "
          + (f"{row['ratio']}x sooner" if row["ratio"] else "no ratio")
          + f"; mnistlab's at {row['mnistlab_gflops']} GFLOP/s = {row['fraction_of_matmul']:.0%} of the "
          f"{precision} matmul rate", flush=True)
    return row


def profile_ops(model_name: str, data, steps: int = 64) -> dict[str, float]:
    """Where a training step of `model_name` (mnistlab's step, float32) spends its time: the share
    of TensorFlow op time per group of OP_GROUPS ("other" for the rest), from a
    tf.profiler trace of `steps` steps after a warm-up, read from the trace's XSpace."""
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    keras.utils.set_random_seed(0)
    config = make_config(model_name, precision="float32")
    model = build(config, "float32")
    compile_model(model, config, steps_per_epoch=steps)
    ds = create_training_ds(data.x_train, data.y_train, config.batch_size, seed=0).repeat()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the threads that run the ops
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "scope/op_name:OpType"
                if ":" in name and "::" not in name:
                    totals[OP_GROUPS.get(op_type(name.rsplit(":", 1)[1]), "other")] += event.duration_ps
    total = sum(totals.values()) or 1
    return {group: round(totals[group] / total, 3) for group in [*dict.fromkeys(OP_GROUPS.values()), "other"]}


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


def output_names() -> tuple[str, str]:
    """results.csv / results.md, or results-avx2.* etc. when ONEDNN_MAX_CPU_ISA caps oneDNN."""
    cap = machine.max_isa_setting()
    suffix = f"-{cap.lower()}" if cap else ""
    return f"results{suffix}.csv", f"results{suffix}.md"


def reference_figures(model_name: str, targets: list[float], steps: int, repeats: int) -> dict:
    """The seed-style reference's images/s and its time to `targets` (possibly none), measured in
    a child process whose TensorFlow starts with TF_ENABLE_ONEDNN_OPTS at TensorFlow's own default
    for this CPU, as the article's code runs. Returns {"onednn_ops": bool, "images_per_second":
    float, "times": {str(target): [seconds, epoch]}}."""
    import tempfile

    env = {**os.environ, machine.ONEDNN_OPTS_VARIABLE: "1" if machine.tf_default_onednn_ops() else "0"}
    request = {"model_name": model_name, "targets": targets, "steps": steps, "repeats": repeats}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reference.json"
        subprocess.run([sys.executable, __file__, "--reference", json.dumps(request), "--out", str(out)],
                       env=env, check=True)
        return json.loads(out.read_text())


def measure_reference(model_name: str, targets: list[float], steps: int, repeats: int) -> dict:
    """`reference_figures` measured in this process (its child runs this)."""
    data = load_dataset()
    times = time_to_targets(model_name, data, "seed", tuple(targets)) if targets else {}
    return {"onednn_ops": machine.onednn_ops_running(),
            "images_per_second": throughput(model_name, data, "seed", steps, repeats),
            "times": {str(t): list(v) for t, v in times.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default: {DEFAULT_MODELS})")
    parser.add_argument("--steps", type=int, default=64,
                        help="batches per timed epoch (default: 64, a whole number of executions of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="throughput only: skip the profile, time to accuracy and memory (default: run them)")
    parser.add_argument("--out", default=str(BENCH_DIR), help="folder for the results files (default: bench/)")
    parser.add_argument("--reference", help=argparse.SUPPRESS)  # internal: the child of reference_figures
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: the child of peer_figures
    parser.add_argument("--no-peers", action="store_true",
                        help="skip the recipes users copy instead (default: measure keras-io's convnet and "
                             "TensorFlow's quickstart MLP)")
    args = parser.parse_args(argv)
    if args.reference:
        Path(args.out).write_text(json.dumps(measure_reference(**json.loads(args.reference))))
        return
    if args.peer:
        Path(args.out).write_text(json.dumps(measure_peer(args.peer)))
        return
    try:  # before any work: an unknown name costs nothing
        models = [get_entry(m.strip()).name for m in args.models.split(",") if m.strip()]
    except ValueError as e:
        parser.error(f"--models: {e}")
    if not models:
        parser.error("--models: name at least one model, e.g. --models cnn")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    csv_name, md_name = output_names()
    started = time.perf_counter()
    machine_info = machine.describe_machine()
    print(f"{machine_info['cpu_model']}, oneDNN ISA {machine_info['onednn_isa']}"
          + (f" (ONEDNN_MAX_CPU_ISA={machine_info['onednn_max_cpu_isa']})" if machine_info["onednn_max_cpu_isa"] else "")
          + f"; mnistlab with TensorFlow's oneDNN operations {'on' if machine_info['onednn_ops'] else 'off'}, the "
          f"article's code with TensorFlow's default here ({'on' if machine.tf_default_onednn_ops() else 'off'})",
          flush=True)
    data = load_dataset()
    rates: dict[str, float] = {}

    def matmul_rate(precision: str) -> float:
        """The matmul rate of the precision a recipe ran in, measured once per bench."""
        if precision not in rates:
            rates[precision] = matmul_gflops(precision=precision)
            how = "numpy" if precision == "float32" else "TensorFlow, bfloat16 matrices"
            print(f"{precision} matmul ({how}, 2048x2048): {rates[precision]:.0f} GFLOP/s", flush=True)
        return rates[precision]

    peak_gflops = matmul_rate("float32")
    rows, profiles, peers, seed_onednn_ops = [], [], [], None
    for name in models:  # each measurement of a model close in time to the others: the machine's speed drifts
        config = make_config(name)
        flops = training_flops_per_image(build_model(name))
        ours = throughput(name, data, "mnistlab", args.steps, args.repeats)
        seed_here = throughput(name, data, "seed", args.steps, args.repeats)  # with this process's oneDNN setting
        precision = machine.resolve(config)["precision"]
        row = {"model": name, "precision": precision, "batch_size": config.batch_size,
               "mnistlab_images_per_second": round(ours), "seed_images_per_second": None, "speedup": None,
               "seed_onednn_images_per_second": round(seed_here), "train_mflop_per_image": round(flops / 1e6, 2),
               "gflops": round(flops * ours / 1e9, 1), "matmul_gflops": round(matmul_rate(precision)),
               "fraction_of_matmul": round(flops * ours / 1e9 / matmul_rate(precision), 3)}
        if not args.quick and name in PROFILED:
            shares = profile_ops(name, data)
            profiles.append({"model": name, **shares})
            row.update({f"step_share {k}": v for k, v in shares.items()})
            print(f"{name} step profile: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v), flush=True)
        targets = TARGETS.get(name, ()) if not args.quick else ()
        ours_times = time_to_targets(name, data, "mnistlab", targets) if targets else {}
        # A target mnistlab's recipe never reaches has no ratio, however long the article's code
        # takes to reach it; its run stops at the targets that can be compared.
        reference = reference_figures(name, [t for t in targets if ours_times[t][1]], args.steps, args.repeats)
        seed_onednn_ops = reference["onednn_ops"]
        row["seed_images_per_second"] = round(reference["images_per_second"])
        row["speedup"] = round(ours / reference["images_per_second"], 2)
        print(f"{name}: {row['mnistlab_images_per_second']} images/s against the article's code's "
              f"{row['seed_images_per_second']} as it runs here ({row['speedup']}x; "
              f"{row['seed_onednn_images_per_second']} with mnistlab's oneDNN setting); {row['gflops']} GFLOP/s = "
              f"{row['fraction_of_matmul']:.0%} of the {precision} matmul rate", flush=True)
        theirs = {float(t): tuple(v) for t, v in reference["times"].items()}
        for style, times in (("mnistlab", ours_times), ("seed", theirs)):
            for target in targets:
                seconds, epoch = times.get(target, (float("nan"), 0))
                row[f"{style}_seconds_to_{target}"] = round(seconds, 1)
                row[f"{style}_epochs_to_{target}"] = epoch
        for target in targets:
            mine, other = row[f"mnistlab_seconds_to_{target}"], row[f"seed_seconds_to_{target}"]
            row[f"time_to_{target}_ratio"] = round(other / mine, 2) if mine == mine and other == other else None
        if targets:
            print(name, {k: v for k, v in row.items() if "_to_" in k}, flush=True)
        if not args.quick and name in ("slp", "bn_cnn"):
            row["peak_rss_mib_1_epoch"] = round(peak_memory_mib(name))
        if not args.quick:
            row["robustness_seconds_per_run"] = round(robustness_seconds(name), 1)
        rows.append(row)
    if not (args.quick or args.no_peers):
        peers = [peer_row(peer, data, matmul_rate) for peer in PEERS]
    from mnistlab.runs import environment_info

    context = {"cpu_model": machine_info["cpu_model"], "onednn_isa": machine_info["onednn_isa"],
               "onednn_max_cpu_isa": machine_info["onednn_max_cpu_isa"] or "", "cores": machine_info["cores"],
               "onednn_ops_mnistlab": machine_info["onednn_ops"], "onednn_ops_seed": seed_onednn_ops,
               "date": str(datetime.date.today()), "mnistlab_commit": (environment_info()["git_commit"] or "")[:12],
               "tensorflow": tf.__version__,
               "float32_matmul_gflops": round(peak_gflops)}
    context["bench_seconds"] = round(time.perf_counter() - started)
    table = pd.DataFrame(rows).assign(**context)
    table.to_csv(out / csv_name, index=False)
    header = (f"`make bench{' ISA=avx2' if machine_info['onednn_max_cpu_isa'] else ''}`, measured {context['date']} "
              f"at mnistlab commit {context['mnistlab_commit']} on {context['cpu_model']} ({context['cores']} cores; "
              f"oneDNN ISA {context['onednn_isa']}), TensorFlow {tf.__version__}; TensorFlow's oneDNN operations "
              f"{'on' if context['onednn_ops_mnistlab'] else 'off'} for mnistlab, "
              f"{'on' if context['onednn_ops_seed'] else 'off'} for the article's code (TensorFlow's default here); "
              "matmul rates " + ", ".join(f"{p} {r:.0f} GFLOP/s" for p, r in rates.items())
              + f" (fraction_of_matmul divides by the rate of the row's precision); {args.steps} batches x {args.repeats} timed epochs per throughput "
              f"figure; {context['bench_seconds']} s in all.")
    text = header + "\n\n" + to_markdown(pd.DataFrame(rows).drop(columns=[c for c in table if c.startswith("step_share")]))
    if profiles:
        text += ("\n\nShare of a training step's op time (tf.profiler, float32, batch of the recipe):\n\n"
                 + to_markdown(pd.DataFrame(profiles)))
    if peers:
        peer_table = pd.DataFrame(peers).assign(**context)
        peer_table.to_csv(out / csv_name.replace("results", "peers"), index=False)
        text += (f"\n\nThe recipes users copy instead, in the same run (each right after mnistlab's recipe it is set "
                 f"against, {PEER_SEEDS} seeds of each in lockstep on the same 55,000 training images; mean training "
                 f"seconds, evaluation excluded, until the mean accuracy on the 10,000 test images first reaches the "
                 f"target; ratio = the peer's seconds / mnistlab's):\n\n" + to_markdown(pd.DataFrame(peers)))
    (out / md_name).write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
