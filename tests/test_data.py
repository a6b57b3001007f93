"""The IDX reader, its checks, and the train/validation/test split."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
from conftest import idx_bytes, synthetic_images, write_idx

from mnistlab.data import (
    DATASETS,
    FILE_STEMS,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    DataError,
    load_dataset,
    parse_idx,
    read_idx_file,
)


def test_parse_idx_round_trip():
    x, y = synthetic_images(7)
    assert np.array_equal(parse_idx(idx_bytes(x), IMAGES_MAGIC), x)
    parsed = parse_idx(idx_bytes(y), LABELS_MAGIC)
    assert parsed.shape == (7,) and parsed.dtype == np.uint8 and np.array_equal(parsed, y)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_file_gzip_or_raw(tmp_path, gz):
    x, _ = synthetic_images(5)
    path = write_idx(tmp_path / "images", x, gz=gz)
    array, digest = read_idx_file(path, IMAGES_MAGIC)
    assert np.array_equal(array, x)
    assert digest == hashlib.sha256(idx_bytes(x)).hexdigest()


def test_wrong_magic_names_file(tmp_path):
    _, y = synthetic_images(5)
    path = write_idx(tmp_path / "labels-as-images", y)
    with pytest.raises(DataError, match=r"labels-as-images.*magic number 2049.*2051"):
        read_idx_file(path, IMAGES_MAGIC)


@pytest.mark.parametrize("cut", [0, 3, 10, 100])
def test_truncated_file(tmp_path, cut):
    x, _ = synthetic_images(3)
    raw = idx_bytes(x)[:cut]
    path = write_idx(tmp_path / "short", raw, gz=False)
    with pytest.raises(DataError, match="short"):
        read_idx_file(path, IMAGES_MAGIC)


def test_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "long", idx_bytes(synthetic_images(3)[0]) + b"\0")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx_file(path, IMAGES_MAGIC)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(synthetic_images(50)[0]))[:200])
    with pytest.raises(DataError, match="cut.gz.*corrupt"):
        read_idx_file(path, IMAGES_MAGIC)


def test_huge_header_refused_before_allocation():
    raw = bytes([0, 0, 8, 3]) + (10**9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 84
    with pytest.raises(DataError, match=r"truncated.*1000000000"):
        parse_idx(raw, IMAGES_MAGIC, "huge")


def _make_dataset(folder, x_train, y_train, x_test, y_test):
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in (("train_images", x_train), ("train_labels", y_train),
                       ("test_images", x_test), ("test_labels", y_test)):
        write_idx(folder / FILE_STEMS[key], array)


def test_count_mismatch(tmp_path):
    x, y = synthetic_images(100)
    _make_dataset(tmp_path / "mnist", x, y[:99], x, y)
    with pytest.raises(DataError, match=r"100 images but .*train-labels.* 99 labels"):
        load_dataset(data_dir=tmp_path, verify_checksums=False)


def test_label_out_of_range(tmp_path):
    x, y = synthetic_images(100)
    y = y.copy()
    y[42] = 10
    _make_dataset(tmp_path / "mnist", x, y, x, y)
    with pytest.raises(DataError, match=r"train-labels.*label 10 at index 42 is outside 0-9"):
        load_dataset(data_dir=tmp_path, verify_checksums=False)


def test_checksum_mismatch_names_file(tiny_data_dir):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: SHA-256 .* expected"):
        load_dataset(data_dir=tiny_data_dir)  # synthetic files are not the published ones


def test_missing_file_lists_paths_and_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte") in message
    assert "make data" in message and "MNISTLAB_DATA_DIR" in message


def test_data_dir_from_environment(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data_dir))
    data = load_dataset(validation_size=100, verify_checksums=False)
    assert data.x_train.shape == (500, 28, 28)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="No dataset named 'cifar' found; known datasets: mnist, fashion_mnist"):
        load_dataset("cifar")


def test_split_sizes_stratified_disjoint(tiny_data_dir):
    data = load_dataset(data_dir=tiny_data_dir, validation_size=100, seed=3, verify_checksums=False)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (500, 100, 100)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.uint8
    # Balanced input: a stratified 100-image split holds exactly 10 of each class.
    assert np.bincount(data.y_val, minlength=10).tolist() == [10] * 10
    ids = lambda x: set((x[:, 0, 0].astype(int) + 256 * x[:, 0, 1].astype(int)).tolist())
    assert ids(data.x_train).isdisjoint(ids(data.x_val))
    assert len(ids(data.x_train) | ids(data.x_val)) == 600


def test_split_is_seeded(tiny_data_dir):
    a = load_dataset(data_dir=tiny_data_dir, validation_size=100, seed=1, verify_checksums=False)
    b = load_dataset(data_dir=tiny_data_dir, validation_size=100, seed=1, verify_checksums=False)
    c = load_dataset(data_dir=tiny_data_dir, validation_size=100, seed=2, verify_checksums=False)
    assert np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_val, c.x_val)


def test_limit(tiny_data_dir):
    data = load_dataset(data_dir=tiny_data_dir, validation_size=100, limit=30, verify_checksums=False)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (30, 30, 30)
    with pytest.raises(ValueError, match="limit=501 must be between 1 and 500"):
        load_dataset(data_dir=tiny_data_dir, validation_size=100, limit=501, verify_checksums=False)


@pytest.mark.parametrize("name", list(DATASETS))
def test_real_data_verifies(real_data_dir, name):
    data = load_dataset(name, data_dir=real_data_dir)
    assert data.x_train.shape == (55000, 28, 28) and data.x_val.shape == (5000, 28, 28)
    assert data.x_test.shape == (10000, 28, 28) and data.y_test.shape == (10000,)
    assert data.digests == DATASETS[name].sha256
    # Stratified: each class's share of the validation split matches the training split's.
    assert np.abs(np.bincount(data.y_val) / 5000 - np.bincount(data.y_train) / 55000).max() < 0.001
    assert data.y_test.max() == 9 and data.x_train.max() == 255


def test_a_file_changed_after_a_load_is_read_again(tiny_data_dir):
    # The process keeps what it read (run-all's kernel loads the same files for every run), by the
    # files' identity: a file replaced since is read and checked again, never served from memory.
    first = load_dataset(data_dir=tiny_data_dir, validation_size=100, verify_checksums=False)
    first.x_test[:] = 0  # callers get copies: writing into one leaves the next load intact
    again = load_dataset(data_dir=tiny_data_dir, validation_size=100, verify_checksums=False)
    assert again.x_test.any()
    path = tiny_data_dir / "mnist" / FILE_STEMS["test_labels"]
    labels = np.frombuffer(path.read_bytes()[8:], np.uint8).copy()
    labels[0] = 12
    write_idx(path, labels, gz=False)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12 at index 0 is outside 0-9"):
        load_dataset(data_dir=tiny_data_dir, validation_size=100, verify_checksums=False)
