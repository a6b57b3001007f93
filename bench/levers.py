"""`make bench-levers`: what each throughput lever gives the convolutional models.

For `cnn` and `bn_cnn` at batch 128, steady-state training images/s of: the seed-style
reference (bench.py); mnistlab's pipeline and step in float32 and in mixed bfloat16 (which runs
on the AMX units of CPUs that have them); for bn_cnn, Keras' own BatchNormalization in place of
mnistlab's FusedBatchNormalization; and, each against mnistlab's float32 figure,
steps_per_execution 1 instead of 32, one inter-op thread, oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)
and XLA (jit_compile). Every figure comes from its own process, so thread and oneDNN settings
take effect, and the list is measured `--rounds` times in alternating order: the median per
lever is printed with its spread. Then the convolutions of `bn_cnn` alone, forward and backward
at batch 128, in GFLOP/s against numpy's matmul rate: where the time of a training step goes.
Writes bench/levers.csv and bench/levers.md.

    .venv/bin/python bench/levers.py [--models cnn,bn_cnn] [--rounds 2] [--steps 48]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# name -> (environment, options of one measurement)
LEVERS = {
    "seed-style reference": ({}, {"style": "seed"}),
    "mnistlab, float32": ({}, {"precision": "float32"}),
    "mnistlab, mixed_bfloat16": ({}, {"precision": "mixed_bfloat16"}),
    # bn_cnn only: Keras' own BatchNormalization instead of mnistlab's fused one.
    "mixed_bfloat16, Keras BatchNorm": ({}, {"precision": "mixed_bfloat16", "build_args": {"fused_batch_norm": False}}),
    "float32, Keras BatchNorm": ({}, {"precision": "float32", "build_args": {"fused_batch_norm": False}}),
    "float32, steps_per_execution=1": ({}, {"precision": "float32", "steps_per_execution": 1}),
    "float32, inter-op threads=1": ({}, {"precision": "float32", "inter_op": 1}),
    "float32, oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {"precision": "float32"}),
    "float32, XLA (jit_compile)": ({}, {"precision": "float32", "jit_compile": True}),
}
# bn_cnn's convolutions: (input height, in channels, out channels, kernel, stride), 'same' padding.
CONVS = [(28, 1, 12, 3, 1), (28, 12, 24, 6, 2), (14, 24, 32, 6, 2)]


def measure_one(model_name: str, steps: int, style: str = "mnistlab", inter_op: int = 0, jit_compile: bool = False,
                **overrides) -> float:
    """Steady-state images/s of one configuration (bench.throughput: median of 3 timed epochs
    after a warm-up); `inter_op` must be set before TensorFlow runs anything, hence a process each."""
    import tensorflow as tf

    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    import bench
    from mnistlab.data import load_dataset

    return bench.throughput(model_name, load_dataset(), style, steps, repeats=3, jit_compile=jit_compile,
                            **overrides)


def applies(model_name: str, lever: str) -> bool:
    """Whether `model_name`'s builder takes the lever's build arguments."""
    from mnistlab.registry import get_entry

    parameters = inspect.signature(get_entry(model_name).build_fn()).parameters
    return all(name in parameters for name in LEVERS[lever][1].get("build_args", {}))


def measure_in_process(model_name: str, lever: str, steps: int) -> float:
    environment, options = LEVERS[lever]
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import levers; "
            "print(levers.measure_one(sys.argv[2], int(sys.argv[3]), **json.loads(sys.argv[4])))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment}
    out = subprocess.run([sys.executable, "-c", code, str(BENCH_DIR), model_name, str(steps), json.dumps(options)],
                         env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def conv_gflops(batch: int = 128, repeats: int = 30) -> list[dict]:
    """Forward, and forward + backward (filter and input gradients), of each of bn_cnn's
    convolutions alone at `batch`, in ms and GFLOP/s (2 FLOPs per multiply-add)."""
    import tensorflow as tf

    def timed(fn, x):
        fn(x)
        start = time.perf_counter()
        for _ in range(repeats):
            result = fn(x)
        [r.numpy() for r in tf.nest.flatten(result)]
        return (time.perf_counter() - start) / repeats

    rows = []
    for height, c_in, c_out, kernel, stride in CONVS:
        x = tf.random.normal([batch, height, height, c_in])
        w = tf.Variable(tf.random.normal([kernel, kernel, c_in, c_out]))
        forward = tf.function(lambda x: tf.nn.conv2d(x, w, stride, "SAME"))

        @tf.function
        def forward_backward(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(x, w, stride, "SAME")))
            return tape.gradient(loss, [x, w])

        flops = 2 * batch * (height // stride) ** 2 * c_out * c_in * kernel * kernel
        f, fb = timed(forward, x), timed(forward_backward, x)
        rows.append({"convolution": f"{c_in}->{c_out} {kernel}x{kernel} /{stride}", "forward_ms": round(f * 1e3, 2),
                     "forward_gflops": round(flops / f / 1e9), "train_ms": round(fb * 1e3, 2),
                     "train_gflops": round(3 * flops / fb / 1e9)})
    return rows


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    import bench

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn,bn_cnn", help="comma-separated (default: cnn,bn_cnn)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per lever, alternating order (default: 2)")
    parser.add_argument("--steps", type=int, default=48, help="batches per timed epoch (default: 48)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",")]
    results: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        order = list(LEVERS) if round_ % 2 == 0 else list(LEVERS)[::-1]
        for model_name in models:
            for lever in order:
                if not applies(model_name, lever):
                    continue
                value = measure_in_process(model_name, lever, args.steps)
                results.setdefault((model_name, lever), []).append(value)
                print(f"round {round_ + 1}/{args.rounds} {model_name:7s} {lever:32s} {value:8.0f} images/s", flush=True)
    rows = []
    for (model_name, lever), values in results.items():
        median = statistics.median(values)
        seed = statistics.median(results[(model_name, "seed-style reference")])
        float32 = statistics.median(results[(model_name, "mnistlab, float32")])
        rows.append({"model": model_name, "lever": lever, "images_per_second": round(median),
                     "min": round(min(values)), "max": round(max(values)),
                     "vs_seed": round(median / seed, 2), "vs_float32": round(median / float32, 2)})
    levers = pd.DataFrame(rows)
    peak = bench.matmul_gflops()
    convs = pd.DataFrame(conv_gflops())
    convs["train_fraction_of_matmul"] = (convs["train_gflops"] / peak).round(2)
    levers.to_csv(BENCH_DIR / "levers.csv", index=False)
    text = (f"Training throughput per lever (median of {args.rounds} processes, {args.steps} batches x 3 timed "
            f"epochs each):\n\n{bench.to_markdown(levers)}\n\nbn_cnn's convolutions alone at batch 128 "
            f"(float32 matmul: {peak:.0f} GFLOP/s):\n\n{bench.to_markdown(convs)}\n")
    (BENCH_DIR / "levers.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
