"""Extra test sets (MNIST-C corruptions, IDX pairs such as QMNIST/EMNIST/KMNIST, .npz files):
reading them safely and validating them into (N, 28, 28) uint8 images with a digest."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnistlab.data import (
    FILE_STEMS,
    FIX_HINT,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    MAX_DECOMPRESSED_BYTES,
    DataError,
    find_idx_file,
    read_idx_file,
)

IMAGE_SHAPE = (28, 28)
MNIST_C_FILES = ("test_images.npy", "test_labels.npy")
NPZ_KEYS = ("x_test", "y_test")
# Versions 1.0 and 2.0 cover every plain array np.save writes (3.0 is for unicode field names).
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
FORMS = (
    "a folder of MNIST-C corruptions (<corruption>/test_images.npy and <corruption>/test_labels.npy), "
    f"a folder holding an IDX pair ({FILE_STEMS['test_images']}[.gz] and {FILE_STEMS['test_labels']}[.gz]), "
    "or an .npz file with arrays x_test and y_test"
)


class TestSetError(ValueError):
    """A test set is missing, malformed or not in one of the accepted forms. One line naming
    the file, what is wrong and, where there is one, the fix."""

    __test__ = False  # its name starts with "Test", but it is not a pytest class

    def __init__(self, message: str):
        # One line, even when it quotes a multi-line message from numpy, zipfile or data.py.
        super().__init__(" ".join(line.strip() for line in message.splitlines() if line.strip()))


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare sha256
class TestSet:
    """One validated test set. Its arrays are read-only, so `sha256` stays true to them."""

    __test__ = False

    name: str  # the corruption's folder name, the IDX pair's folder name, or the .npz file's stem
    x: np.ndarray  # (N, 28, 28) uint8
    y: np.ndarray  # (N,) uint8
    sha256: str  # SHA-256 over x's bytes then y's bytes (C order, as stored above)
    source: str  # the folder or file it was read from

    @property
    def num_images(self) -> int:
        return len(self.y)


def digest_of(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 (hex) of the image bytes then the label bytes of (N, 28, 28) uint8 x and (N,) uint8 y.

    It depends only on the content, not on the file form it was read from.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def load_test_sets(path: str | os.PathLike, num_classes: int = 10) -> list[TestSet]:
    """Read every test set at `path`, validated.

    `path` is one of:
      - a folder in the MNIST-C layout, `path/<corruption>/test_images.npy` ((N, 28, 28, 1) or
        (N, 28, 28) uint8) and `path/<corruption>/test_labels.npy` ((N,) integer): one TestSet
        per sub-folder (hidden ones skipped), sorted by name;
      - a folder holding `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`
        (as QMNIST, EMNIST digits and KMNIST ship): one TestSet named after the folder;
      - an `.npz` file with arrays `x_test` and `y_test`: one TestSet named after the file's stem.

    Never unpickles, and checks each array's declared size against MAX_DECOMPRESSED_BYTES
    before allocating it. Returns TestSets with x (N, 28, 28) uint8 and y (N,) uint8 labels in
    [0, num_classes). Raises TestSetError (a ValueError) with one line naming the file, the
    problem and the fix: a path that does not exist or is none of the three forms, a missing
    file, images not 28x28 or not uint8, labels not integer or outside [0, num_classes), image
    and label counts that differ, an empty set, a file that is not what its name says or is too
    large. Raises ValueError for num_classes outside 1-256.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be an integer in 1-256 (labels are stored as uint8), got {num_classes!r}")
    path = Path(path)
    if not path.exists():
        raise TestSetError(f"{path}: no such file or folder; give {FORMS}")
    if path.is_file():
        if path.suffix == ".npz":
            return [_load_npz(path, num_classes)]
        hint = " (give the folder that holds it)" if path.name.startswith("t10k-") or path.suffix == ".npy" else ""
        raise TestSetError(f"{path}: not a test set{hint}; give {FORMS}")
    if not path.is_dir():
        raise TestSetError(f"{path}: neither a file nor a folder; give {FORMS}")
    idx = _load_idx_pair(path, num_classes)
    if idx is not None:
        return [idx]
    corruptions = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if any((d / f).exists() for d in corruptions for f in MNIST_C_FILES):
        return [_load_mnist_c(d, num_classes) for d in corruptions]
    raise TestSetError(f"{path}: a folder in none of the accepted forms; give {FORMS}")


def _load_mnist_c(folder: Path, num_classes: int) -> TestSet:
    images_path, labels_path = (folder / f for f in MNIST_C_FILES)
    for expected in (images_path, labels_path):
        if not expected.is_file():
            raise TestSetError(f"{expected}: missing; every corruption folder of an MNIST-C test set "
                               f"holds {' and '.join(MNIST_C_FILES)}")
    with open(images_path, "rb") as f:
        x = _read_npy(f, str(images_path))
    with open(labels_path, "rb") as f:
        y = _read_npy(f, str(labels_path))
    return _validated(folder.name, x, y, str(images_path), str(labels_path), str(folder), num_classes)


def _load_idx_pair(folder: Path, num_classes: int) -> TestSet | None:
    """The folder's IDX test pair, or None if it holds neither file."""
    found = {}
    for key in ("test_images", "test_labels"):
        try:
            found[key] = find_idx_file(folder, FILE_STEMS[key])
        except DataError:
            found[key] = None
    if found["test_images"] is None and found["test_labels"] is None:
        return None
    for key, path in found.items():
        if path is None:
            raise TestSetError(f"{folder / FILE_STEMS[key]}[.gz]: missing; an IDX test set is a folder "
                               f"holding both {FILE_STEMS['test_images']}[.gz] and {FILE_STEMS['test_labels']}[.gz]")
    try:
        x, _ = read_idx_file(found["test_images"], IMAGES_MAGIC)
        y, _ = read_idx_file(found["test_labels"], LABELS_MAGIC)
    except DataError as e:
        # data.py's fix hint is about the project's own MNIST folder, not a test set the user brings.
        raise TestSetError(str(e).replace(FIX_HINT, "").strip()) from e
    return _validated(folder.resolve().name, x, y, str(found["test_images"]), str(found["test_labels"]),
                      str(folder), num_classes)


def _load_npz(path: Path, num_classes: int) -> TestSet:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise TestSetError(f"{path}: not an .npz (zip) archive ({e}); save it with "
                           f"np.savez(path, x_test=..., y_test=...)") from e
    with archive:
        members = {name.removesuffix(".npy") for name in archive.namelist()}
        for key in NPZ_KEYS:
            if key not in members:
                raise TestSetError(f"{path}: no array {key!r} (it holds {sorted(members)}); save it with "
                                   f"np.savez(path, x_test=..., y_test=...)")
        arrays = []
        for key in NPZ_KEYS:
            try:
                with archive.open(f"{key}.npy") as f:
                    arrays.append(_read_npy(f, f"{path}[{key}]"))
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:  # corrupt member, bad CRC
                raise TestSetError(f"{path}[{key}]: cannot be read ({e}); the file is corrupt") from e
    x, y = arrays
    return _validated(path.stem, x, y, f"{path}[x_test]", f"{path}[y_test]", str(path), num_classes)


def _read_npy(f: BinaryIO, name: str) -> np.ndarray:
    """Read one .npy stream without unpickling, refusing a declared size over MAX_DECOMPRESSED_BYTES
    before the array is allocated."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError as e:
        raise TestSetError(f"{name}: not a .npy array ({e}); save it with np.save") from e
    if version not in NPY_HEADER_READERS:
        raise TestSetError(f"{name}: .npy format version {version} is not supported; save it with np.save")
    try:
        shape, _, dtype = NPY_HEADER_READERS[version](f)
    except ValueError as e:
        raise TestSetError(f"{name}: corrupt .npy header ({e}); save it again with np.save") from e
    if dtype.hasobject:
        raise TestSetError(f"{name}: holds Python objects ({dtype}), which would need unpickling; "
                           f"mnistlab never unpickles: save a uint8 array")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > MAX_DECOMPRESSED_BYTES:
        raise TestSetError(f"{name}: declares shape {shape} of {dtype} ({nbytes} bytes), more than "
                           f"{MAX_DECOMPRESSED_BYTES}; this is not an MNIST-size test set")
    f.seek(0)
    try:
        return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as e:  # fewer data bytes than the header declares
        raise TestSetError(f"{name}: truncated or corrupt ({e})") from e


def _validated(name: str, x: np.ndarray, y: np.ndarray, images: str, labels: str, source: str,
               num_classes: int) -> TestSet:
    if x.ndim == 4 and x.shape[-1] == 1:  # MNIST-C stores a channel axis
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise TestSetError(f"{images}: images of shape {x.shape}, expected (N, 28, 28) or (N, 28, 28, 1); "
                           f"resize them to 28x28 pixels")
    if x.dtype != np.uint8:
        raise TestSetError(f"{images}: images of dtype {x.dtype}, expected uint8; "
                           f"convert pixel values in 0-255 with x.astype(np.uint8)")
    if y.ndim != 1:
        raise TestSetError(f"{labels}: labels of shape {y.shape}, expected (N,); flatten them")
    if not np.issubdtype(y.dtype, np.integer):
        raise TestSetError(f"{labels}: labels of dtype {y.dtype}, expected integers; "
                           f"save class indices with y.astype(np.uint8)")
    if len(x) != len(y):
        raise TestSetError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; "
                           f"the two do not belong together")
    if len(x) == 0:
        raise TestSetError(f"{images}: holds no images; an empty test set scores nothing")
    out_of_range = (y < 0) | (y >= num_classes)
    if out_of_range.any():
        bad = int(np.argmax(out_of_range))
        raise TestSetError(f"{labels}: label {int(y[bad])} at index {bad} is outside 0-{num_classes - 1}; "
                           f"pass num_classes if the set has more classes")
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y, dtype=np.uint8)
    x.flags.writeable = False
    y.flags.writeable = False
    return TestSet(name=name, x=x, y=y, sha256=digest_of(x, y), source=source)
