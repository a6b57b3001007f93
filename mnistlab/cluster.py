"""A Dask cluster of separate processes on this machine (`dask scheduler` and `dask worker`, as
on a real cluster, each with its own environment), for `make cluster-demo` and the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessCluster:
    """A scheduler on loopback and one worker process per entry of `workers` (1 thread each),
    started in `cwd` with the environment stripped of MNISTLAB_* variables plus that entry.
    Stop it with `stop()` (or use it as a context manager). Raises TimeoutError if the workers
    have not joined within `timeout` seconds."""

    def __init__(self, cwd: Path, workers: list[dict], timeout: float = 120):
        from dask.distributed import Client

        self.address = f"tcp://127.0.0.1:{free_port()}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MNISTLAB_")}
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        self.procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                        self.address.rsplit(":", 1)[1], "--no-dashboard"], env=base, **quiet)]
        for extra in workers:
            self.procs.append(subprocess.Popen([DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                                "--no-dashboard"], env={**base, **extra}, **quiet))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout="5s") as client:
                    client.wait_for_workers(len(workers), timeout=max(1.0, deadline - time.monotonic()))
                return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"the Dask workers did not join {self.address} in {timeout:.0f} s") from None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
