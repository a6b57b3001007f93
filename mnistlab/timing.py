"""Where a run's seconds go: wall seconds per stage of `train_and_evaluate` (checks and data, build,
training, evaluation, figures, saving, TensorBoard), written to the run folder's `timing.json`
and gathered by run-all into `run_all_timing.json`. A record of cost, never of results."""

from __future__ import annotations

import contextlib
import time

STAGES = ("checks_and_data", "build", "training", "evaluation", "figures", "saving", "tensorboard")
_seconds: dict[str, float] = {}


def reset() -> None:
    """Start a new run's account (train_and_evaluate calls it first)."""
    _seconds.clear()


@contextlib.contextmanager
def stage(name: str):
    """Add the wall seconds of the `with` block to stage `name` (one of STAGES)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; one of {', '.join(STAGES)}")
    start = time.perf_counter()
    try:
        yield
    finally:
        _seconds[name] = _seconds.get(name, 0.0) + time.perf_counter() - start


def seconds() -> dict[str, float]:
    """The current run's seconds per stage, in STAGES' order, rounded to milliseconds."""
    return {name: round(_seconds[name], 3) for name in STAGES if name in _seconds}
