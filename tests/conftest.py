"""Shared fixtures: tiny synthetic IDX files and datasets, and the real data directory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import FILE_STEMS, MnistData, default_data_dir


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as an IDX file: magic (0x08, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray | bytes, gz: bool = True) -> Path:
    raw = array if isinstance(array, bytes) else idx_bytes(array)
    path = Path(f"{path}.gz") if gz else Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n distinct (28, 28) uint8 images (the index is written into the first pixels) and
    balanced labels 0-9, each class drawing a bright bar in its own row band so that a model
    can learn something."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.uint8)
    x = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):
        x[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    x[:, 0, 0] = np.arange(n) % 256
    x[:, 0, 1] = np.arange(n) // 256
    return x, y


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A data directory with an `mnist/` folder of 600 training and 100 test synthetic images."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    x_train, y_train = synthetic_images(600, seed=1)
    x_test, y_test = synthetic_images(100, seed=2)
    write_idx(folder / FILE_STEMS["train_images"], x_train)
    write_idx(folder / FILE_STEMS["train_labels"], y_train)
    write_idx(folder / FILE_STEMS["test_images"], x_test, gz=False)  # both forms are read
    write_idx(folder / FILE_STEMS["test_labels"], y_test, gz=False)
    return tmp_path / "data"


@pytest.fixture
def tiny_data() -> MnistData:
    """A synthetic MnistData: 320 train, 60 validation, 60 test images."""
    x, y = synthetic_images(440)
    return MnistData(x[:320], y[:320], x[320:380], y[320:380], x[380:], y[380:],
                     class_names=tuple("0123456789"), digests={"synthetic": "none"})


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real MNIST files (filled by `make data`). Missing data is a failure, not a skip."""
    data_dir = default_data_dir()
    if not (data_dir / "mnist").is_dir():
        pytest.fail(f"No MNIST in {data_dir}: run `make data` (or set MNISTLAB_DATA_DIR)")
    return data_dir


@pytest.fixture(autouse=True)
def clean_registry():
    """Models a test registers (from a file, a module or a cell) are gone after it: tests in one
    process must not see each other's models."""
    from mnistlab.registry import restored

    with restored():
        yield


@pytest.fixture(autouse=True)
def default_runs_dir(tmp_path: Path, monkeypatch) -> Path:
    """A run written without a runs folder lands in the test's own tmp_path, never in runs/."""
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path))
    return tmp_path


def pytest_collection_modifyitems(config, items):
    """A test that reads the real MNIST files is part of the slow tier (`pytest -m "not slow"`
    skips it), like those marked slow by hand: subprocesses, notebooks, Dask."""
    for item in items:
        if "real_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
