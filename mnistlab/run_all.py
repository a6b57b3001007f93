"""run-all (`make run-all`): plan every model and seed as one complete, validated config each,
check the builders, run the plan through train_model.ipynb (mnistlab.executor), then the
comparison notebook; skipped runs, failures and the comparison's own status counted apart."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from mnistlab.config import TrainConfig, check_overrides, make_config
from mnistlab.executor import Executor, local_locations, run_tasks
from mnistlab.machine import available_cores
from mnistlab.progress import Progress, TimeLeft, planned_cost
from mnistlab.registry import FIX_MODELS_FROM, expand_model_names, get_entry, load_models_from
from mnistlab.runs import check_writable, new_run_name, resolve_runs_dir, write_json
from mnistlab.task import KERNELS, Task, check_kernel, export_locations, run_log

# Images of each corruption run-all evaluates the runs on: the first 4,000 of 10,000 keep the
# robustness evaluation within 15% of a one-seed run-all of the core six (docs/results.md);
# `evaluate` and --corruption-images 10000 take them all.
CORRUPTION_IMAGES = 4000
# Keys run-all sets itself, per run: an override of them would make every run the same.
PLAN_KEYS = ("model", "seed")


def plan_runs(models, seeds: int, workers: int = 1, scheduler: str | None = None, prepare=None,
              **overrides) -> list[TrainConfig]:
    """The validated config of every run of a batch: each model of `models` (names or groups)
    with seeds 0..seeds-1 and `overrides` (any config key but model and seed; `models_from` names
    the user's model files or modules). With `workers` > 1 on this machine, each run gets
    `threads` = cores / workers unless the overrides set it. A model registered in this session
    only (a notebook cell) cannot travel to the notebooks that train it and is refused, as is a
    builder that breaks the contract (mnistlab.architecture). Raises ValueError naming the first
    bad model, key or value, before any work. `prepare(plan)`, if given, is called once every
    config is valid and before the builders are checked."""
    for key, value in (("seeds", seeds), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    for key in PLAN_KEYS:
        if key in overrides:
            raise ValueError(f"{key} is set per run by run-all; use --models for models and --seeds N "
                             f"for seeds 0..N-1, not --set {key}=...")
    load_models_from(check_overrides(overrides).get("models_from", ()))
    models = expand_model_names(models)
    for model in models:
        entry = get_entry(model)
        if not entry.portable:
            raise ValueError(f"model {model!r} was registered in this Python session (a notebook cell), which the "
                             f"notebooks run-all executes cannot import; {FIX_MODELS_FROM}")
    if workers > 1 and not scheduler and overrides.get("threads") is None:
        overrides["threads"] = max(1, available_cores() // workers)
    plan = [make_config(model, seed=seed, **overrides) for model in models for seed in range(seeds)]
    if prepare is not None:
        prepare(plan)
    from mnistlab.architecture import describe  # (imports TensorFlow: after `prepare`)

    for config in plan:
        describe(config)  # each builder called and checked once, before any run starts
    return plan


def warm_kernel(plan: list[TrainConfig], runs_dir: Path) -> None:
    """Runs in this process: start the first run's kernel now (mnistlab.task.Kernels.prestart),
    told where the plan's model files are as train_one tells it, so that its imports overlap
    this process's checks of the builders. The kernel's own standard error (TensorFlow's
    start-up lines, the kernel's warnings) goes to `runs_dir`/.logs/kernel.log."""
    check_writable(runs_dir)
    export_locations(local_locations(dict.fromkeys(source for config in plan for source in config.models_from)))
    with run_log(runs_dir / ".logs" / "kernel.log", echo=False):
        KERNELS.prestart(plan[0])
    import papermill  # noqa: F401 -- this process's own 1.5 s import, done while the kernel warms up


def expected_cost(runs_dir: Path, force: bool = False):
    """A task's cost for the time left (mnistlab.progress.planned_cost), or 0 for a config that has
    a completed run in `runs_dir` now: where it starts, it will most likely be skipped (an estimate;
    the decision itself is made there, by mnistlab.task.run_state)."""
    from mnistlab.architecture import planned_hash
    from mnistlab.results import completed_runs_by_hash

    completed = {} if force else completed_runs_by_hash(runs_dir)
    return lambda task: 0.0 if planned_hash(task.config) in completed else planned_cost(task.config)


def after_the_runs(tasks: list[Task], cost, corruption_images: int) -> float:
    """Seconds of what follows a plan's runs: the comparison notebook, and each run's robustness
    evaluation (loading its model, about a second, and a forward pass over 15 x `corruption_images`
    images, a third of a training step's cost per image)."""
    from mnistlab.progress import COMPARISON_SECONDS, training_seconds_per_image

    robustness = sum(1.0 + training_seconds_per_image(t.config) / 3 * 15 * corruption_images
                     for t in tasks) if corruption_images else 0.0
    return COMPARISON_SECONDS + robustness


def evaluate_corruptions(runs_dir: Path, dataset: str, log=print, images: int | None = CORRUPTION_IMAGES) -> float | None:
    """Evaluate the counted runs of `dataset` in `runs_dir` on the MNIST-C-style corruptions
    (regenerated; mnistlab.robustness; the first `images` of each) where not done yet. Returns the
    seconds it took (None for a dataset other than MNIST, which MNIST-C is made from)."""
    from mnistlab.results import latest_runs, load_runs
    from mnistlab.robustness import LABEL, REGENERATED, evaluate_runs, regenerated_sets

    if dataset != "mnist":
        return None
    start = time.perf_counter()
    counted, _ = latest_runs(load_runs(runs_dir), dataset)
    if counted.empty:
        return 0.0
    sets = regenerated_sets(dataset=dataset, log=log, images=images)
    log(f"Robustness: the {len(counted)} runs compared, on the {LABEL} corruptions ({len(sets[0].y):,} images of each)")
    evaluate_runs([Path(d) for d in counted.run_dir], REGENERATED, sets, label=LABEL, log=log)
    return time.perf_counter() - start


def around_the_training(runs_dir: Path, outcome) -> dict:
    """{"stage_seconds": the run's seconds per stage other than training (its timing.json),
    "outside_the_run_seconds": the task's wall seconds not spent in any stage}; {} when the run
    folder is not readable from here (a Dask worker's own disk) or holds no timing.json."""
    from mnistlab.runs import read_json

    path = Path(outcome.run_dir or "")
    path = path if path.is_absolute() else runs_dir / path
    try:
        stages = read_json(path / "timing.json")["seconds"]
        spent = sum(float(v) for v in stages.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {"stage_seconds": {k: v for k, v in stages.items() if k != "training"},
            "outside_the_run_seconds": round(outcome.seconds - spent, 2)}


def run_all(models: list[str] | str | None = None, seeds: int = 1, runs_dir: str | os.PathLike | None = None,
            log_output: bool = True, force: bool = False, workers: int = 1, scheduler: str | None = None,
            verbose: bool = False, corruptions: bool = True, corruption_images: int | None = CORRUPTION_IMAGES,
            **overrides) -> Path:
    """Train every model of `models` (names or groups, see mnistlab.registry.expand_model_names;
    default: the "core" comparison) `seeds` times via train_model.ipynb, then execute
    compare_runs.ipynb. `overrides` (epochs, limit, recipe, models_from, ...) apply to every run.

    Every config is validated, and every builder checked, before the first notebook starts, so a
    bad parameter costs no training time; the notebook trains exactly the config planned here.
    Incremental: where a run starts, a config (by config hash) that already has a completed run
    in `runs_dir` is skipped unless `force`, and one another process is training is left to it;
    an interrupted run resumes from its backup. A run whose notebook fails does not stop the
    others; the failures are raised together (as RuntimeError, each with its cell's error) after
    the comparison has been written.

    Beyond clean accuracy: with `corruptions` (the default, MNIST runs only), every counted run not
    yet evaluated on the regenerated MNIST-C-style corruptions is evaluated on them (in this
    process, from its model.keras; the first `corruption_images` of each corruption, None for all
    10,000) before the comparison, which then compares robustness too.

    Parallel: `workers` > 1 runs that many notebooks at once on a Dask LocalCluster (one
    process each, TensorFlow limited to cores / workers threads per run); `scheduler`
    ("tcp://host:port") sends them to an existing Dask cluster whose workers can import
    mnistlab and see `runs_dir` (the model files are shipped to them). Returns the executed
    comparison notebook's path.

    The console shows a line per run, its epoch lines (not with `log_output=False`) and its
    result, the progress with the time elapsed and left, and at the end the comparison table;
    everything else (TensorFlow's and the kernel's logs, papermill's) goes to each run's
    train.log (`verbose`: to the console too).
    """

    check_kernel()
    runs_dir = resolve_runs_dir(runs_dir)
    plan = plan_runs(models, seeds, workers, scheduler, **overrides,
                     prepare=None if workers > 1 or scheduler else lambda plan: warm_kernel(plan, runs_dir))
    check_writable(runs_dir)
    start = time.perf_counter()
    tasks = [Task(new_run_name(config.model), config, f"{config.model} seed {config.seed}") for config in plan]
    cost = expected_cost(runs_dir, force)
    progress = Progress(len(tasks), TimeLeft(cost, after=lambda left: after_the_runs(
        tasks, cost, corruption_images if corruptions and plan[0].dataset == "mnist" else 0)))
    sources = [source for config in plan for source in config.models_from]
    with Executor(runs_dir, workers, scheduler, log_output, dataset=plan[0].dataset, verbose=verbose,
                  force=force, models_from=sources) as executor:
        finished = run_tasks(executor, tasks, progress)
        outcomes = [outcome for _, outcome in finished]
        # Per run trained: its wall seconds (from the task's start to its folder's last file) and its
        # training seconds; the difference is the time around the run (kernel, data, evaluation, files).
        # Where the time around goes: the run's own stages (its timing.json: checks and data, build,
        # evaluation, figures, saving, TensorBoard) and what is outside them (the notebook's other
        # cells, papermill, the kernel's reset or start).
        per_run = [{"run": task.run_name, "model": task.config.model, "seed": task.config.seed,
                    "wall_seconds": round(o.seconds, 2), "train_seconds": o.metrics["train_seconds"],
                    "around_seconds": round(o.seconds - o.metrics["train_seconds"], 2),
                    **around_the_training(runs_dir, o)}
                   for task, o in finished if o.state == "trained" and o.metrics]
        failures = [o.detail for o in outcomes if o.state in ("failed", "locked")
                    or (o.state == "trained" and o.status != "completed")]
        robustness_seconds = evaluate_corruptions(runs_dir, plan[0].dataset, images=corruption_images) if corruptions else None
        output = runs_dir / "compare_runs.ipynb"
        comparison, comparison_start = None, time.perf_counter()
        try:
            with run_log(runs_dir / "compare_runs.log", echo=False, echo_all=verbose):
                # In the runs' kernel where one is alive here: its imports are done.
                executor.execute_notebook("compare_runs.ipynb", output, parameters={
                    "runs_dir": str(runs_dir), "dataset": plan[0].dataset, "interactive": False})
        except Exception as e:  # noqa: BLE001 -- papermill's error names the failing cell
            lines = str(e).strip().splitlines()
            comparison = f"compare_runs.ipynb failed: {lines[-1] if lines else type(e).__name__} (log: {runs_dir / 'compare_runs.log'})"
        comparison_seconds = time.perf_counter() - comparison_start
    if log_output and comparison is None:
        from mnistlab.compare import Comparison
        from mnistlab.summary import print_comparison

        compared = Comparison(runs_dir, plan[0].dataset)
        print_comparison(compared.table, beyond=compared.beyond_line(),
                         where=f"Report: make report (from {output}); figures and tables: {runs_dir}/*.png, *.csv")
    skipped = sum(o.state == "skipped" for o in outcomes)
    write_json(runs_dir / "run_all_timing.json", {
        "seconds": round(time.perf_counter() - start, 1), "planned": len(plan), "skipped": skipped,
        "trained": len(outcomes) - skipped - len(failures), "failed": len(failures),
        "comparison": comparison or "completed", "workers": workers, "scheduler": scheduler,
        "robustness_seconds": None if robustness_seconds is None else round(robustness_seconds, 1),
        "comparison_seconds": round(comparison_seconds, 1),
        # Runs one at a time: this process's own work outside the runs, the robustness step and the
        # comparison (the time-left estimate's cost measurements, one per model; the skips).
        "outside_the_runs_seconds": None if workers > 1 or scheduler else round(
            time.perf_counter() - start - sum(o.seconds for _, o in finished) - (robustness_seconds or 0)
            - comparison_seconds, 1),
        "runs": per_run,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    if failures or comparison:
        raise RuntimeError(f"{len(failures)} of {len(plan) - skipped} runs started failed" + (":\n  " if failures else "")
                           + "\n  ".join(failures) + (f"\n{comparison}" if comparison else ""))
    return output
