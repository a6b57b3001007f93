"""Extra test sets: the MNIST-C, IDX-pair and .npz forms read back exactly, their digest, and a
one-line TestSetError for every bad input."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_images, write_idx
from mnistlab.data import FILE_STEMS, MAX_DECOMPRESSED_BYTES
from mnistlab.testsets import TestSet, TestSetError, load_test_sets


def write_mnist_c(root: Path, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """The official MNIST-C layout: root/<corruption>/test_images.npy (N, 28, 28, 1) uint8 and
    test_labels.npy (N,) int64, plus the train files the loader must ignore."""
    for name, (x, y) in sets.items():
        folder = root / name
        folder.mkdir(parents=True)
        np.save(folder / "test_images.npy", x[..., None])
        np.save(folder / "test_labels.npy", y.astype(np.int64))
        np.save(folder / "train_images.npy", x[:5, ..., None])
    return root


def write_idx_pair(folder: Path, x: np.ndarray, y: np.ndarray, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / FILE_STEMS["test_images"], x, gz=gz)
    write_idx(folder / FILE_STEMS["test_labels"], y, gz=gz)
    return folder


def write_npy_header(path: Path, shape: tuple, descr: str = "|u1", body: bytes = b"") -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(body)
    return path


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(300, seed=3)


def assert_is(test_set: TestSet, x: np.ndarray, y: np.ndarray, name: str) -> None:
    assert test_set.name == name
    assert test_set.x.dtype == np.uint8 and test_set.x.shape == (len(x), 28, 28)
    assert test_set.y.dtype == np.uint8 and test_set.y.shape == (len(y),)
    np.testing.assert_array_equal(test_set.x, x)
    np.testing.assert_array_equal(test_set.y, y)


# ---- the three forms read back exactly --------------------------------------------------


def test_mnist_c_folder_gives_one_set_per_corruption_sorted_by_name(tmp_path, data):
    x, y = data
    sets = {"zigzag": (x, y), "fog": (x[::-1].copy(), y[::-1].copy()), "brightness": (x[:100], y[:100])}
    root = write_mnist_c(tmp_path / "mnist_c", sets)
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not corruptions
    (root / "README.md").write_text("MNIST-C")
    loaded = load_test_sets(root)
    assert [t.name for t in loaded] == ["brightness", "fog", "zigzag"]
    for test_set in loaded:
        assert_is(test_set, *sets[test_set.name], test_set.name)
        assert test_set.source == str(root / test_set.name)


def test_mnist_c_images_without_a_channel_axis_are_accepted(tmp_path, data):
    x, y = data
    folder = tmp_path / "c" / "identity"
    folder.mkdir(parents=True)
    np.save(folder / "test_images.npy", x)
    np.save(folder / "test_labels.npy", y)
    (test_set,) = load_test_sets(tmp_path / "c")
    assert_is(test_set, x, y, "identity")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_pair_folder_gives_one_set_named_after_the_folder(tmp_path, data, gz):
    x, y = data
    folder = write_idx_pair(tmp_path / "qmnist", x, y, gz=gz)
    (test_set,) = load_test_sets(folder)
    assert_is(test_set, x, y, "qmnist")
    assert test_set.source == str(folder)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_file_gives_one_set_named_after_its_stem(tmp_path, data, save):
    x, y = data
    path = tmp_path / "my_digits.npz"
    save(path, x_test=x, y_test=y.astype(np.int32), x_train=x[:3])
    (test_set,) = load_test_sets(path)
    assert_is(test_set, x, y, "my_digits")
    assert test_set.source == str(path)


def test_more_classes_are_accepted_with_num_classes(tmp_path, data):
    x, y = data
    y = (np.arange(len(y)) % 47).astype(np.uint8)  # EMNIST balanced has 47 classes
    path = tmp_path / "emnist.npz"
    np.savez(path, x_test=x, y_test=y)
    assert_is(load_test_sets(path, num_classes=47)[0], x, y, "emnist")


def test_arrays_are_read_only_so_the_digest_stays_true(tmp_path, data):
    path = tmp_path / "d.npz"
    np.savez(path, x_test=data[0], y_test=data[1])
    (test_set,) = load_test_sets(path)
    with pytest.raises(ValueError, match="read-only"):
        test_set.x[0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        test_set.y[0] = 1


# ---- the digest -------------------------------------------------------------------------


def test_digest_is_sha256_of_images_then_labels_whatever_the_form(tmp_path, data):
    x, y = data
    expected = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    write_mnist_c(tmp_path / "c", {"identity": (x, y)})
    write_idx_pair(tmp_path / "idx", x, y)
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y.astype(np.int64))
    for path in (tmp_path / "c", tmp_path / "idx", tmp_path / "d.npz"):
        assert [t.sha256 for t in load_test_sets(path)] == [expected]
        assert load_test_sets(path)[0].sha256 == expected  # stable across reads


def test_digest_differs_for_different_data(tmp_path, data):
    x, y = data
    other_pixel, other_label = x.copy(), y.copy()
    other_pixel[17, 14, 14] ^= 1
    other_label[17] = (other_label[17] + 1) % 10
    digests = []
    for i, (xi, yi) in enumerate([(x, y), (other_pixel, y), (x, other_label), (x[:-1], y[:-1])]):
        np.savez(tmp_path / f"{i}.npz", x_test=xi, y_test=yi)
        digests.append(load_test_sets(tmp_path / f"{i}.npz")[0].sha256)
    assert len(set(digests)) == 4


# ---- bad inputs: one line naming the file, the problem and the fix ----------------------


def assert_one_line_error(path, match: str, names: str, num_classes: int = 10) -> str:
    with pytest.raises(TestSetError, match=match) as error:
        load_test_sets(path, num_classes=num_classes)
    message = str(error.value)
    assert "\n" not in message
    assert names in message
    return message


def test_image_and_label_counts_that_differ(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y[:299])
    assert_one_line_error(tmp_path / "d.npz", "holds 300 images but .* holds 299 labels", "d.npz")


def test_image_and_label_counts_that_differ_in_an_idx_pair(tmp_path, data):
    x, y = data
    folder = write_idx_pair(tmp_path / "kmnist", x, y[:10])
    assert_one_line_error(folder, "holds 300 images but .* holds 10 labels", FILE_STEMS["test_labels"])


def test_labels_out_of_range(tmp_path, data):
    x, y = data
    y = y.astype(np.int64)
    y[42] = 10
    write_mnist_c(tmp_path / "c", {"fog": (x, y)})
    assert_one_line_error(tmp_path / "c", "label 10 at index 42 is outside 0-9; pass num_classes",
                          str(tmp_path / "c" / "fog" / "test_labels.npy"))


def test_negative_labels_are_out_of_range(tmp_path, data):
    x, y = data
    y = y.astype(np.int16)
    y[5] = -1
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y)
    assert_one_line_error(tmp_path / "d.npz", "label -1 at index 5 is outside 0-9", "d.npz[y_test]")


def test_labels_out_of_range_for_a_smaller_num_classes(tmp_path, data):
    folder = write_idx_pair(tmp_path / "idx", *data)
    assert_one_line_error(folder, "label 5 at index 5 is outside 0-4", FILE_STEMS["test_labels"], num_classes=5)


def test_images_of_another_size(tmp_path):
    x = np.zeros((300, 32, 32), np.uint8)
    np.savez(tmp_path / "d.npz", x_test=x, y_test=np.zeros(300, np.uint8))
    assert_one_line_error(tmp_path / "d.npz", r"images of shape \(300, 32, 32\), expected \(N, 28, 28\).*resize",
                          "d.npz[x_test]")


def test_images_with_three_channels(tmp_path, data):
    x, y = data
    write_mnist_c(tmp_path / "c", {"fog": (np.repeat(x[..., None], 3, axis=-1), y)})
    assert_one_line_error(tmp_path / "c", r"images of shape \(300, 28, 28, 3, 1\)", "test_images.npy")


def test_images_of_another_dtype(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "d.npz", x_test=x.astype(np.float32) / 255, y_test=y)
    assert_one_line_error(tmp_path / "d.npz", "images of dtype float32, expected uint8", "d.npz[x_test]")


def test_labels_that_are_not_integers(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y.astype(np.float64))
    assert_one_line_error(tmp_path / "d.npz", "labels of dtype float64, expected integers", "d.npz[y_test]")


def test_labels_not_one_dimensional(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y[:, None])
    assert_one_line_error(tmp_path / "d.npz", r"labels of shape \(300, 1\), expected \(N,\)", "d.npz[y_test]")


def test_missing_file_in_a_corruption_folder_is_named(tmp_path, data):
    write_mnist_c(tmp_path / "c", {"fog": data, "glass_blur": data})
    (tmp_path / "c" / "glass_blur" / "test_labels.npy").unlink()
    assert_one_line_error(tmp_path / "c", "missing; every corruption folder",
                          str(tmp_path / "c" / "glass_blur" / "test_labels.npy"))


@pytest.mark.parametrize("present, absent", [("test_images", "test_labels"), ("test_labels", "test_images")])
def test_missing_file_of_an_idx_pair_is_named(tmp_path, data, present, absent):
    folder = write_idx_pair(tmp_path / "idx", *data)
    (folder / f"{FILE_STEMS[absent]}.gz").unlink()
    assert_one_line_error(folder, "missing; an IDX test set is a folder holding both",
                          str(folder / FILE_STEMS[absent]))


def test_missing_array_in_an_npz(tmp_path, data):
    np.savez(tmp_path / "d.npz", x_test=data[0], labels=data[1])
    assert_one_line_error(tmp_path / "d.npz", r"no array 'y_test' .*np.savez\(path, x_test=..., y_test=...\)",
                          "d.npz")


@pytest.mark.parametrize("form", ["mnist_c", "idx", "npz"])
def test_empty_set(tmp_path, form):
    x, y = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    path = {"mnist_c": lambda: write_mnist_c(tmp_path / "c", {"fog": (x, y)}),
            "idx": lambda: write_idx_pair(tmp_path / "idx", x, y),
            "npz": lambda: np.savez(tmp_path / "d.npz", x_test=x, y_test=y) or tmp_path / "d.npz"}[form]()
    assert_one_line_error(path, "holds no images", str(path))


def test_path_that_does_not_exist(tmp_path):
    assert_one_line_error(tmp_path / "nowhere", "no such file or folder; give .*MNIST-C", "nowhere")


@pytest.mark.parametrize("make", [
    lambda p: (p / "empty").mkdir() or p / "empty",
    lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt",
    lambda p: (p / "nested" / "deeper").mkdir(parents=True) or p / "nested",
])
def test_path_of_none_of_the_forms_lists_the_forms(tmp_path, make):
    path = make(tmp_path)
    message = assert_one_line_error(path, "give a folder of MNIST-C corruptions", str(path))
    assert "IDX pair" in message and ".npz file with arrays x_test and y_test" in message


def test_an_idx_file_given_instead_of_its_folder(tmp_path, data):
    folder = write_idx_pair(tmp_path / "idx", *data)
    path = folder / f"{FILE_STEMS['test_images']}.gz"
    assert_one_line_error(path, "give the folder that holds it", str(path))


# ---- hostile or corrupt files: refused before allocating, never unpickled ----------------


def test_pickled_object_array_is_refused(tmp_path, data):
    np.savez(tmp_path / "d.npz", x_test=data[0], y_test=np.array([{"evil": 1}] * 300, dtype=object))
    assert_one_line_error(tmp_path / "d.npz", "Python objects .* never unpickles", "d.npz[y_test]")


def test_absurd_declared_size_is_refused_before_allocating(tmp_path, data):
    folder = tmp_path / "c" / "fog"
    folder.mkdir(parents=True)
    shape = (MAX_DECOMPRESSED_BYTES // 784 + 1, 28, 28, 1)
    write_npy_header(folder / "test_images.npy", shape, body=b"\0" * 784)
    np.save(folder / "test_labels.npy", data[1])
    assert_one_line_error(tmp_path / "c", r"declares shape .* more than \d+; this is not an MNIST-size",
                          "test_images.npy")


def test_absurd_declared_size_inside_an_npz_is_refused(tmp_path, data):
    header = tmp_path / "x_test.npy"
    write_npy_header(header, (10**9, 28, 28), body=b"\0" * 784)
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.write(header, "x_test.npy")
        archive.writestr("y_test.npy", b"")
    assert_one_line_error(tmp_path / "d.npz", "declares shape", "d.npz[x_test]")


def test_truncated_npy_is_refused(tmp_path, data):
    folder = tmp_path / "c" / "fog"
    folder.mkdir(parents=True)
    write_npy_header(folder / "test_images.npy", (300, 28, 28), body=data[0].tobytes()[:1000])
    np.save(folder / "test_labels.npy", data[1])
    assert_one_line_error(tmp_path / "c", "truncated or corrupt", "test_images.npy")


def test_file_that_is_not_npy(tmp_path, data):
    folder = tmp_path / "c" / "fog"
    folder.mkdir(parents=True)
    (folder / "test_images.npy").write_bytes(b"P5\n28 28\n255\n" + bytes(784))
    np.save(folder / "test_labels.npy", data[1])
    assert_one_line_error(tmp_path / "c", "not a .npy array", "test_images.npy")


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip at all")
    assert_one_line_error(tmp_path / "d.npz", r"not an .npz \(zip\) archive", "d.npz")


def test_idx_file_of_the_wrong_kind_names_it_without_the_make_data_hint(tmp_path, data):
    x, y = data
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / FILE_STEMS["test_images"], y)  # a labels file where images belong
    write_idx(folder / FILE_STEMS["test_labels"], y)
    message = assert_one_line_error(folder, "magic number 2049", FILE_STEMS["test_images"])
    assert "make data" not in message


def test_num_classes_must_fit_uint8(tmp_path, data):
    np.savez(tmp_path / "d.npz", x_test=data[0], y_test=data[1])
    for bad in (0, 257, 2.5):
        with pytest.raises(ValueError, match="num_classes must be an integer in 1-256"):
            load_test_sets(tmp_path / "d.npz", num_classes=bad)


def test_error_messages_are_one_line_even_when_quoting_a_multi_line_one():
    assert str(TestSetError("d.npz: bad\n  details from numpy\n")) == "d.npz: bad details from numpy"
