"""Keeps TensorFlow's C++ start-up lines (absl's "All log messages before absl::InitializeLog()",
the oneDNN notice, CUDA probing and its cuInit error on a machine without a GPU, the CPU-feature
note) off the console and out of notebook cells, which show them as red error blocks.

`import mnistlab` installs an import hook: the first import of TensorFlow afterwards runs with
standard error (file descriptor 2, where TensorFlow's C++ code writes) sent to a log file, and the
devices are probed then, which is when the CUDA lines come; then standard error is the user's
again, so any later error shows. The lines go to $MNISTLAB_TF_LOG (run-all and sweeps set it to
the run's train.log), else to <temporary folder>/mnistlab-tensorflow.log. A process that imported
TensorFlow before mnistlab keeps TensorFlow's own behaviour.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

LOG_ENV = "MNISTLAB_TF_LOG"


def log_path() -> Path:
    """Where TensorFlow's start-up lines go in this process."""
    return Path(os.environ.get(LOG_ENV) or Path(tempfile.gettempdir()) / "mnistlab-tensorflow.log")


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with file descriptor 2 pointing at the log file."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            log = os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:  # no log file to be had: TensorFlow speaks as it would
            os.close(saved)
            return self.loader.exec_module(module)
        os.dup2(log, 2)
        os.close(log)
        try:
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # CUDA's probing (and its cuInit error) happens here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` the usual way, once, and hands it the quiet loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_HOOK = _QuietTensorFlowImport()


def install() -> None:
    """Quiet the next import of TensorFlow (nothing to do if it is imported already)."""
    if "tensorflow" not in sys.modules and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
