"""The console of a plan: the time left from what each planned run costs, priced by the finished
runs (the first one's kernel start left out of the time around a run)."""

from __future__ import annotations

import pytest

from mnistlab.config import make_config
from mnistlab.progress import TimeLeft, minutes, planned_cost
from mnistlab.task import Outcome, Task


def task(name: str, epochs: int) -> Task:
    return Task(name, make_config("mlp", epochs=epochs), name)


def finished(train: float, wall: float) -> Outcome:
    return Outcome("trained", status="completed", metrics={"train_seconds": train}, seconds=wall)


def test_planned_cost_counts_training_validation_and_test_images(monkeypatch):
    monkeypatch.setattr("mnistlab.progress.training_seconds_per_image", lambda config: 0.003)
    # 2 epochs x (1,000 training images + 1,000 validation images at a third) + 1,000 test images at a third
    assert planned_cost(make_config("mlp", epochs=2, limit=1000)) == pytest.approx(0.003 * (2 * (1000 + 1000 / 3) + 1000 / 3))
    assert planned_cost(make_config("mlp", epochs=1, validation_size=0)) == pytest.approx(0.003 * (60000 + 10000 / 3))


def test_time_left_prices_the_remaining_runs_by_the_finished_ones():
    cost = lambda t: 10.0 * t.config.epochs  # noqa: E731 -- measured: 10 s of steps per epoch
    left = TimeLeft(cost, after=lambda tasks: 7.0)
    assert left.seconds([task("a", 4)]) is None  # nothing finished: no estimate
    left.add(task("a", 1), finished(train=11.0, wall=25.0))  # the first run also started the kernel
    assert left.seconds([task("b", 2)]) == pytest.approx(2 * 10.0 + 2 * 1.0 + 14.0 + 7.0)
    left.add(task("b", 3), finished(train=32.0, wall=35.0))
    # Each epoch adds (1 + 2/3) / 2 s beyond its steps; around a run: 3 s (the first run left out).
    per_epoch = (1.0 + 2.0 / 3) / 2
    assert left.seconds([task("c", 5), task("d", 1)]) == pytest.approx(50 + 5 * per_epoch + 3 + 10 + per_epoch + 3 + 7)
    left.add(task("e", 2), Outcome("skipped", status="completed", metrics={"train_seconds": 99.0}))
    assert len(left.finished) == 2  # a skipped run costs nothing and teaches nothing


def test_minutes():
    assert (minutes(12.4), minutes(61), minutes(245)) == ("12 s", "1 min 01 s", "4 min 05 s")


def test_the_cost_per_image_is_measured_once_per_model():
    # (No comparison of two timings here: speed is measured by make bench, never asserted.)
    from mnistlab.progress import _SECONDS_PER_IMAGE, planned_cost, training_seconds_per_image

    mlp = make_config("mlp", precision="float32")
    assert training_seconds_per_image(mlp) > 0
    measured = len(_SECONDS_PER_IMAGE)
    assert planned_cost(make_config("mlp", epochs=9, precision="float32")) > planned_cost(mlp)
    assert len(_SECONDS_PER_IMAGE) == measured  # the same model: not measured again
    training_seconds_per_image(make_config("mlp", batch_size=64, precision="float32"))
    assert len(_SECONDS_PER_IMAGE) == measured + 1  # another batch size is another cost
