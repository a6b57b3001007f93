"""The console of a plan of runs (run-all, sweeps): a line when each run starts, its result when it
ends, and the runs done, failed and left with the time elapsed and left. The time left comes from
what each planned run costs: its epochs and images times its model's training cost per image,
measured here once per model (a few training steps as the run takes them: its batch size, steps
per execution, precision and preprocessing; dense layers and convolutions run at very different
rates, and a FLOP count cannot tell), priced by the runs of the plan that have finished: wall
seconds = the time around a run + a factor (a run's seconds against the measured cost) x that cost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from mnistlab.config import TrainConfig, train_images
from mnistlab.task import Outcome, Task, result_text

TEST_IMAGES = 10_000


_SECONDS_PER_IMAGE: dict = {}


class _EpochSeconds:
    def __new__(cls):
        import keras

        class EpochSeconds(keras.callbacks.Callback):
            seconds: list = []

            def on_epoch_begin(self, epoch, logs=None):
                import time as clock

                self._start = clock.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                import time as clock

                self.seconds = [*self.seconds, clock.perf_counter() - self._start]

        return EpochSeconds()


def training_seconds_per_image(config: TrainConfig, steps: int = 32) -> float:
    """Seconds of training per image for the config's model, as a run takes its steps here (its
    batch size, steps per execution, resolved precision and augmentation), measured once per model
    and setting: one epoch of `steps` steps to trace and warm up, then one timed epoch, on random
    images."""
    import numpy as np
    import tensorflow as tf

    from mnistlab.architecture import builder_kwargs
    from mnistlab.machine import resolve
    from mnistlab.registry import get_entry

    precision = resolve(config)["precision"]
    key = (config.model, precision, config.batch_size, config.augment, config.shift_pixels, config.robust_augment,
           config.elastic_augment, tuple(sorted(builder_kwargs(config, get_entry(config.model)).items())), config.models_from)
    if key not in _SECONDS_PER_IMAGE:
        from mnistlab.train import build, compile_model

        model = build(config, precision)
        compile_model(model, config, steps_per_epoch=steps, steps_per_execution=min(config.steps_per_execution, steps))
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (config.batch_size, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, config.batch_size).astype(np.uint8)
        data = tf.data.Dataset.from_tensors((x, y)).repeat()
        timer = _EpochSeconds()
        tensorflow_log = logging.getLogger("tensorflow")
        level = tensorflow_log.level
        tensorflow_log.setLevel(logging.ERROR)  # its "retracing" advice, about these throwaway models, is not for the console
        try:
            model.fit(data, steps_per_epoch=steps, epochs=2, callbacks=[timer], verbose=0, shuffle=False)
        finally:
            tensorflow_log.setLevel(level)
        _SECONDS_PER_IMAGE[key] = timer.seconds[-1] / (steps * config.batch_size)
    return _SECONDS_PER_IMAGE[key]


def planned_cost(config: TrainConfig) -> float:
    """A run's cost in measured seconds: its training images per epoch times the epochs times
    `training_seconds_per_image`, and a third of that per image for its validation and test
    passes (inference)."""
    per_image = training_seconds_per_image(config)
    val = min(config.validation_size, config.limit or config.validation_size)
    test = min(TEST_IMAGES, config.limit or TEST_IMAGES)
    return per_image * (config.epochs * (train_images(config) + val / 3) + test / 3)


def minutes(seconds: float) -> str:
    """"4 min 05 s", or "12 s" under a minute."""
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s" if seconds >= 60 else f"{seconds:.0f} s"


# What follows a plan's runs, measured on the core six (1 seed, 2 cores): the comparison notebook,
# in the runs' kernel (mnistlab.task.Kernels.reuse), about 8 s (15 s in a kernel of its own).
COMPARISON_SECONDS = 8.0


class TimeLeft:
    """Seconds left of a plan from what each run costs. `cost(task)` gives a task's training
    seconds as measured here (`planned_cost`); each finished run adds (its cost, its epochs, its
    training seconds, its wall seconds). A run's training seconds are its cost plus what every
    epoch adds beyond its steps (validation, the epoch's backup and logs), and the time around a
    run (data, evaluation, saving) the mean of wall minus training seconds, each as the finished
    runs show it (the first run's kernel start left out once there are others); `after(tasks)`
    adds what follows the runs (the robustness evaluation, the comparison). Before any run has
    finished there is no estimate (None)."""

    def __init__(self, cost: Callable[[Task], float], after: Callable[[list[Task]], float] | None = None):
        self.cost, self.after = cost, after or (lambda tasks: COMPARISON_SECONDS)
        self.finished: list[tuple[float, int, float, float]] = []  # (cost, epochs, train seconds, wall seconds)

    def add(self, task: Task, outcome: Outcome) -> None:
        if outcome.state == "trained" and outcome.metrics and outcome.seconds:
            self.finished.append((self.cost(task), task.config.epochs, float(outcome.metrics["train_seconds"]),
                                  outcome.seconds))

    def seconds(self, tasks: list[Task]) -> float | None:
        """Estimated seconds of `tasks` and of what follows the plan's runs."""
        if not self.finished:
            return None
        cost, epochs, train, wall = (np.array(column, dtype=float) for column in zip(*self.finished))
        # The first run also started the kernel the later ones reuse (mnistlab.task.Kernels).
        around = float(np.mean(np.maximum(wall - train, 0.0)[1:] if len(wall) > 1 else wall - train))
        per_epoch = float(np.mean(np.maximum(train - cost, 0.0) / np.maximum(epochs, 1)))
        return sum(self.cost(task) + per_epoch * task.config.epochs + around for task in tasks) + self.after(tasks)


class Progress:
    """Prints a plan's console lines. `total`: the runs planned; `describe_result(outcome)`: the
    text of a finished run's result (default: test accuracy and training seconds)."""

    def __init__(self, total: int, time_left: TimeLeft | None = None,
                 describe_result: Callable[[Outcome], str] | None = None, rerun_hint: str = "FORCE=1 re-runs it"):
        self.total, self.time_left, self.rerun_hint = total, time_left, rerun_hint
        self.describe_result = describe_result or (lambda outcome: result_text(outcome.metrics))
        self.start = time.perf_counter()
        self.started, self.done, self.failed, self.skipped = 0, 0, 0, 0

    def run_started(self, task: Task) -> None:
        self.started += 1
        print(f"[{self.started}/{self.total}] {task.label}  ({task.run_name})", flush=True)

    def run_finished(self, task: Task, outcome: Outcome, remaining: list[Task], parallel: bool = False) -> None:
        if self.time_left is not None:
            self.time_left.add(task, outcome)
        where = f" on {outcome.where}" if parallel and outcome.where else ""
        if outcome.state == "skipped":
            self.skipped += 1
            print(f"    skip {task.label}: completed as {outcome.run_dir.rsplit('/', 1)[-1]} ({self.rerun_hint})",
                  flush=True)
            return
        if outcome.state == "trained" and outcome.status == "completed":
            self.done += 1
            print(f"    {self.describe_result(outcome)}, {outcome.run_dir}", flush=True)
            head = f"finished {task.run_name}{where}"
        elif outcome.state == "trained" and outcome.status == "pruned":
            self.done += 1
            print(f"    pruned: {outcome.detail}", flush=True)
            head = f"pruned {task.run_name}{where}"
        else:
            self.failed += 1
            head = f"FAILED {outcome.detail if outcome.state != 'trained' else f'{task.run_name}: {outcome.status}: {outcome.detail}'}"
        elapsed = time.perf_counter() - self.start
        left = len(remaining)
        estimate = self.time_left.seconds(remaining) if self.time_left is not None else None
        tail = f"~{minutes(estimate)} left" if estimate is not None else "time left unknown"
        print(f"{head}; {self.done} done, {self.failed} failed, {left} left; {minutes(elapsed)} elapsed, {tail}",
              flush=True)
