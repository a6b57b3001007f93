"""`make cluster-demo`: the distributed path, shown for real on this machine. Starts a Dask
scheduler and worker processes apart from this client (their environment has no MNISTLAB_*
variables), runs a small run-all on one worker and then, into a fresh folder, on two, then a
two-trial sweep, prints the counts and wall times, and stops the cluster.

    .venv/bin/python bench/cluster_demo.py [--runs-dir runs/cluster-demo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from mnistlab.run_all import run_all
from mnistlab.cluster import ProcessCluster
from mnistlab.machine import describe_machine
from mnistlab.sweep import run_sweep

PLAN = dict(models=["slp", "mlp", "dropout_mlp", "tiny_mlp"], epochs=2, limit=10000)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs/cluster-demo", help="a folder the demo may empty (default: runs/cluster-demo)")
    args = parser.parse_args(argv)
    root = Path(args.runs_dir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    machine = describe_machine()
    print(f"machine: {machine['cpu_model']}, {machine['cores']} cores, oneDNN ISA {machine['onednn_isa']}")
    seconds = {}
    for workers in (1, 2):
        runs_dir = root / f"{workers}-workers"
        runs_dir.mkdir(parents=True)
        with ProcessCluster(root, [{}] * workers) as cluster:
            print(f"\n== run-all of {len(PLAN['models'])} models on {workers} worker(s) at {cluster.address}")
            start = time.perf_counter()
            run_all(PLAN["models"], runs_dir=runs_dir, epochs=PLAN["epochs"], limit=PLAN["limit"],
                    scheduler=cluster.address, log_output=False)
            seconds[workers] = time.perf_counter() - start
            timing = json.loads((runs_dir / "run_all_timing.json").read_text())
            print(f"counts: planned {timing['planned']}, skipped {timing['skipped']}, trained {timing['trained']}, "
                  f"failed {timing['failed']}; comparison {timing['comparison']}; {seconds[workers]:.0f} s")
            if workers == 2:
                print("\n== a two-trial Optuna sweep of slp on the same workers")
                folder = run_sweep("slp", search=["learning_rate=0.0003:0.03:log"], trials=2, epochs=1, limit=5000,
                                   runs_dir=runs_dir, scheduler=cluster.address, log_output=False)
                print((folder / "sweep.csv").read_text())
    print(f"wall time of the plan: 1 worker {seconds[1]:.0f} s, 2 workers {seconds[2]:.0f} s "
          f"({seconds[1] / seconds[2]:.2f}x), on {machine['cpu_model']} ({machine['onednn_isa']})")


if __name__ == "__main__":
    main()
