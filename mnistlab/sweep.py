"""Sweeps of settings (`python -m mnistlab sweep`, `make sweep`): a full-factorial grid, or an
Optuna search (TPE, seeded; median pruning on val_accuracy), each trial an ordinary run folder
under `<runs_dir>/sweeps/<name>/`, run by the loop run-all uses (mnistlab.executor.run_tasks).

The Optuna study lives in `study.db` (SQLite) beside the trials, so an interrupted sweep resumes
where it stopped: grid points with a completed run are skipped, as in run-all; search trials
whose run completed are told their result, the others are tried again. The best setting is the
one with the highest mean final validation accuracy over its seeds; test accuracy never chooses.
"""

from __future__ import annotations

import itertools
import math
import typing
from pathlib import Path

from mnistlab.config import FIELDS, NOT_RESULT, TrainConfig, _coerce, check_overrides, make_config
from mnistlab.executor import Executor, run_tasks
from mnistlab.progress import Progress, TimeLeft, planned_cost
from mnistlab.results import run_status
from mnistlab.runs import check_writable, new_run_name, read_json, resolve_runs_dir, write_json
from mnistlab.sweep_report import print_settings, sweep_table, write_figures
from mnistlab.task import Outcome, Task, check_kernel, run_log

SWEEPS_DIR = "sweeps"
NOT_SWEPT = ("model", "seed", "verbose", "recipe", *NOT_RESULT)
_TYPES = typing.get_type_hints(TrainConfig)


def _check_key(key: str, option: str) -> str:
    if key not in FIELDS:
        raise ValueError(f"{option} {key!r}: unknown config key; known keys: {', '.join(FIELDS)}")
    if key in NOT_SWEPT:
        raise ValueError(f"{option} {key!r}: not a setting to sweep (use --model, --seeds)")
    return key


def parse_grid(items: list[str]) -> dict[str, list]:
    """`KEY=V1,V2,...` options as {key: [values]}, each value checked and converted like a
    config override. Raises ValueError naming the option and the fix."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = _check_key(key.strip(), "--grid")
        if not sep or not values.strip():
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid learning_rate=0.001,0.003")
        grid[key] = [_coerce(key, v.strip()) for v in values.split(",")]
        if len(set(map(repr, grid[key]))) != len(grid[key]):
            raise ValueError(f"--grid {item!r}: a value is repeated")
    return grid


def parse_search(items: list[str]) -> dict:
    """`KEY=LOW:HIGH[:log|:int]` options as {key: Optuna distribution}. Raises ValueError for an
    unknown or non-numeric key, or a range that is not LOW < HIGH (LOW > 0 for log)."""
    import optuna

    space = {}
    for item in items:
        key, sep, spec = item.partition("=")
        key = _check_key(key.strip(), "--search")
        parts = spec.split(":")
        if not sep or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "int")):
            raise ValueError(f"--search {item!r}: expected KEY=LOW:HIGH, KEY=LOW:HIGH:log or KEY=LOW:HIGH:int")
        base = next(t for t in (typing.get_args(_TYPES[key]) or (_TYPES[key],)) if t is not type(None))
        if base not in (int, float):
            raise ValueError(f"--search {key!r}: a {base.__name__} setting has no range; use --grid {key}=...")
        integer = base is int or parts[2:] == ["int"]
        try:
            low, high = (int(p) if integer else float(p) for p in parts[:2])
        except ValueError:
            raise ValueError(f"--search {item!r}: LOW and HIGH must be {'integers' if integer else 'numbers'}") from None
        log = parts[2:] == ["log"]
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0):
            raise ValueError(f"--search {item!r}: need LOW < HIGH" + (" and LOW > 0 on a log scale" if log else ""))
        space[key] = (optuna.distributions.IntDistribution(low, high, log=log) if integer
                      else optuna.distributions.FloatDistribution(low, high, log=log))
    return space


def grid_points(grid: dict[str, list]) -> list[dict]:
    """The full factorial of `grid`, in the order the keys and values were given."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def sweep_dir(runs_dir, name: str) -> Path:
    from mnistlab.config import check_run_name

    return resolve_runs_dir(runs_dir) / SWEEPS_DIR / check_run_name(name)


def run_sweep(model: str, grid: list[str] = (), search: list[str] = (), trials: int = 12, seeds: int = 1,
              name: str | None = None, runs_dir=None, workers: int = 1, scheduler: str | None = None,
              sampler_seed: int = 0, log_output: bool = True, **overrides) -> Path:
    """Sweep `model`'s settings: `grid` (KEY=V1,V2 options, full factorial) or `search`
    (KEY=LOW:HIGH[:log|:int] options, `trials` Optuna trials), each point with `seeds` seeds, plus
    the recipe's own point for comparison; `overrides` (epochs, limit, models_from, ...) apply to
    every run.

    Every option, the base config and every grid point are validated (and the builder checked)
    before anything runs. Writes into the sweep folder: the trials' run folders, study.db,
    sweep.csv, parallel_coordinates.png, importance.png and the executed sweep_report.ipynb. The
    console shows each trial's setting, seed and result (or why it was pruned) with the time left,
    and ends with the table of settings. Returns the sweep folder.
    """
    import optuna

    from mnistlab.architecture import describe

    if bool(grid) == bool(search):
        raise ValueError("give --grid options or --search options (with --trials), not both and not neither")
    for key, value in (("trials", trials), ("seeds", seeds), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if workers > 1 and not scheduler and overrides.get("threads") is None:
        from mnistlab.machine import available_cores

        overrides["threads"] = max(1, available_cores() // workers)  # runs side by side share the cores
    overrides = check_overrides(overrides)
    base = make_config(model, **overrides)
    overrides["models_from"] = base.models_from
    describe(base)  # the builder, checked before anything runs
    grid_values = parse_grid(list(grid)) if grid else {}
    space = parse_search(list(search)) if search else {}
    points = [{}] + (grid_points(grid_values) if grid else [])  # the recipe's own point first: the baseline
    configs = [(point, make_config(model, seed=seed, **{**overrides, **point})) for point in points
               for seed in range(seeds)]  # every point must be a valid config before any runs
    name = name or f"{model}-{'grid' if grid else 'search'}"
    folder = sweep_dir(runs_dir, name)
    check_writable(folder)
    check_kernel()
    storage = f"sqlite:///{folder / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    write_json(folder / "sweep.json", {"model": model, "grid": grid_values, "search": list(search),
                                       "trials": trials, "seeds": seeds, "overrides": overrides})
    keys = list(grid_values) or list(space)
    unique = list({config: (point, config) for point, config in configs}.values())  # a grid point equal to the recipe's runs once
    tasks = [Task(new_run_name(model), config, _label(point, config.seed)) for point, config in unique]
    total = len(tasks) + (trials if space else 0)
    progress = Progress(total, TimeLeft(lambda task: planned_cost(task.config)), describe_result=_sweep_result,
                        rerun_hint="already in the sweep")
    with Executor(folder, workers, scheduler, log_output, dataset=base.dataset, models_from=base.models_from) as executor:
        if space:
            done: set[str] = set()
            trial_tasks = _TrialTasks(study, folder, model, overrides, space, trials, storage)

            def on_outcome(task: Task, outcome: Outcome) -> None:
                done.add(task.run_name)
                trial_tasks.tell(task, outcome)

            run_tasks(executor, itertools.chain(tasks, trial_tasks), progress, on_outcome=on_outcome,
                      remaining=lambda: [t for t in tasks if t.run_name not in done] + [tasks[0]] * trial_tasks.left())
        else:
            run_tasks(executor, tasks, progress)
        table = sweep_table(folder, keys)
        table.to_csv(folder / "sweep.csv", index=False)
        write_figures(table, keys, folder)
        with run_log(folder / "sweep_report.log", echo=False):  # in the runs' kernel, where one is alive here
            executor.execute_notebook("sweep_report.ipynb", folder / "sweep_report.ipynb",
                                      parameters={"sweep_dir": str(folder)})
    if log_output:
        print_settings(table, where=f"table {folder / 'sweep.csv'}, report {folder / 'sweep_report.ipynb'}")
    return folder


def _label(point: dict, seed: int) -> str:
    """What the console calls a trial: "learning_rate=0.003,batch_size=64 seed 1", or the recipe's point."""
    setting = ",".join(f"{k}={v}" for k, v in point.items()) or "the recipe's setting"
    return f"{setting} seed {seed}"


def _sweep_result(outcome: Outcome) -> str:
    metrics = outcome.metrics
    val = metrics.get("val_accuracy")
    return (f"val_accuracy {val:.4f}, " if val is not None else "") + \
        f"test accuracy {metrics['test_accuracy']:.4f}, {metrics['train_seconds']:.1f} s of training"


class _TrialTasks:
    """The Optuna search's tasks, asked one at a time as the executor has room (TPE learns from the
    trials told before): an iterable of Tasks, `tell` as the on-outcome hook. A trial left running
    by an interrupted sweep is told its run's result if it completed, else failed and asked again."""

    def __init__(self, study, folder: Path, model: str, overrides: dict, space: dict, trials: int, storage: str):
        import optuna

        self.study, self.folder, self.model, self.overrides = study, folder, model, overrides
        self.space, self.trials, self.storage = space, trials, storage
        self.running: dict[str, int] = {}
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            _tell(study, trial.number, folder / trial.user_attrs.get("run", "-"), requeue=trial.params)

    def _finished(self) -> int:
        import optuna

        return len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                 optuna.trial.TrialState.PRUNED)))

    def __iter__(self):
        return self

    def __next__(self) -> Task | None:
        """The next trial's task; None while the trials running may still fail and need another."""
        if self._finished() + len(self.running) >= self.trials:
            if self.running:  # a failed trial may still ask for another: wait for the running ones
                return None
            raise StopIteration
        trial = self.study.ask(self.space)
        config = make_config(self.model, seed=0, **{**self.overrides, **trial.params})
        run_name = new_run_name(self.model)
        trial.set_user_attr("run", run_name)
        self.running[run_name] = trial.number
        return Task(run_name, config, f"trial {trial.number}: " + _label(trial.params, 0),
                    prune={"storage": self.storage, "study": self.study.study_name, "trial_id": trial._trial_id})

    def tell(self, task: Task, outcome: Outcome) -> None:
        if task.run_name in self.running:
            _tell(self.study, self.running.pop(task.run_name), self.folder / task.run_name)

    def left(self) -> int:
        """Trials not yet finished (for the time left, each priced like the recipe's point)."""
        return max(self.trials - self._finished(), 0)


def _tell(study, number: int, run_dir: Path, requeue: dict | None = None) -> str:
    import optuna

    status = run_status(run_dir) if run_dir.is_dir() else "missing"
    if status == "completed":
        study.tell(number, read_json(run_dir / "metrics.json")["val_accuracy"])
    elif status == "pruned":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
        if requeue is not None:
            study.enqueue_trial(requeue)
    return status
