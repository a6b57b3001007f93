"""MNIST-format data: reading and verifying the IDX files, and the train/validation/test split.

This module knows nothing of models or TensorFlow; it returns numpy arrays.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "MNISTLAB_DATA_DIR"

# IDX magic numbers: 0x0000 (two zero bytes), type 0x08 (unsigned byte), number of dimensions.
IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (N,)
# A decompressed MNIST-format file is at most 47 MB; refuse to inflate anything far larger
# (a gzip bomb, or a file that is not what its name says).
MAX_DECOMPRESSED_BYTES = 256 * 2**20

FILE_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FIX_HINT = (
    "Run `make data` to copy and verify the dataset into the project's data/ folder, "
    f"or set {DATA_DIR_ENV} to a folder holding mnist/ and fashion-mnist/ "
    "(the layout of ../shared/data/)."
)


class DataError(ValueError):
    """A dataset file is missing, malformed or does not match its published checksum."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What mnistlab knows about one MNIST-format dataset."""

    folder: str  # sub-folder of the data directory
    class_names: tuple[str, ...]
    # SHA-256 of each file's *decompressed* bytes (compressed bytes depend on the compressor),
    # from ../shared/data/<folder>/SHA256SUMS.idx.
    sha256: dict[str, str]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        folder="mnist",
        class_names=tuple(str(d) for d in range(10)),
        sha256={
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        },
    ),
    "fashion_mnist": DatasetInfo(
        folder="fashion-mnist",
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        sha256={
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
    ),
}


@dataclasses.dataclass(frozen=True)
class MnistData:
    """One dataset split three ways. Images (N, 28, 28) uint8 in [0, 255]; labels (N,) uint8."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    digests: dict[str, str]  # file stem -> SHA-256 of its decompressed bytes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name. Raises ValueError naming the known datasets."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"No dataset named {name!r} found; known datasets: {', '.join(DATASETS)}"
        ) from None


def default_data_dir() -> Path:
    """`$MNISTLAB_DATA_DIR` if set, else the project's `data/` folder."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else PROJECT_DIR / "data"


def read_decompressed(path: Path, max_bytes: int | None = None) -> bytes:
    """Return the bytes of `path`, gunzipped if it is gzip (by content, not name).

    Reads in chunks so that a corrupt or hostile file cannot make it allocate more than
    `max_bytes` (default MAX_DECOMPRESSED_BYTES). Raises DataError naming the file if it is not valid gzip or is too large.
    """
    path = Path(path)
    max_bytes = MAX_DECOMPRESSED_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    chunks, total = [], 0
    try:
        with (gzip.open(path, "rb") if is_gzip else open(path, "rb")) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(
                        f"{path}: more than {max_bytes} bytes once decompressed; this is not an "
                        f"MNIST-format IDX file. {FIX_HINT}"
                    )
                chunks.append(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot decompress ({e}); the file is corrupt. {FIX_HINT}") from e
    return b"".join(chunks)


def parse_idx(raw: bytes, expected_magic: int, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one uint8 IDX file (header: magic, then one big-endian int32 per dim).

    Returns an array of the header's shape, uint8: (N, rows, cols) for images (magic 2051),
    (N,) for labels (magic 2049). Raises DataError naming `name` for a wrong magic number, a
    header or body shorter or longer than the header says, or a shape numpy cannot hold (one
    dimension 0, the others huge). The size is checked against the header *before* any array is
    built, so a header claiming 10**9 images allocates nothing.
    """
    if len(raw) < 4:
        raise DataError(f"{name}: {len(raw)} bytes, too short for an IDX header (empty or truncated file)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(magic, "not an IDX uint8 file")
        raise DataError(
            f"{name}: magic number {magic} (0x{magic:08x}) where {expected_magic} was expected "
            f"({kind}); the file is of the wrong kind or corrupt. {FIX_HINT}"
        )
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{name}: truncated header ({len(raw)} of {header_len} bytes). {FIX_HINT}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_len + int(np.prod(shape, dtype=object))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {problem}: header says shape {shape} ({expected} bytes in all), "
            f"file holds {len(raw)} bytes. {FIX_HINT}"
        )
    try:
        return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape).copy()
    except ValueError as e:  # e.g. (0, 3e9, 3e9): no bytes, but numpy refuses the shape itself
        raise DataError(f"{name}: header shape {shape} is not an array numpy can hold ({e}). {FIX_HINT}") from None


def find_idx_file(folder: Path, stem: str) -> Path:
    """Return `folder/stem.gz` or `folder/stem`, whichever exists (gzip first).

    Raises DataError listing every path tried and how to get the data.
    """
    tried = [folder / f"{stem}.gz", folder / stem]
    for path in tried:
        if path.is_file():
            return path
    raise DataError(
        "Dataset file not found; tried:\n  " + "\n  ".join(str(p) for p in tried) + f"\n{FIX_HINT}"
    )


def read_idx_file(path: Path, expected_magic: int, sha256: str | None = None) -> tuple[np.ndarray, str]:
    """Read and check one IDX file (gzip or raw). Returns (array, SHA-256 of decompressed bytes).

    With `sha256` given, a digest mismatch raises DataError naming the file.
    """
    raw = read_decompressed(path)
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"{path}: SHA-256 of the decompressed bytes is {digest}, expected {sha256}; "
            f"the file is corrupt or not the published one. Delete it, then: {FIX_HINT}"
        )
    return parse_idx(raw, expected_magic, str(path)), digest


# The pairs this process has read and checked, keyed by the files' identity (path, device, inode,
# size, modification time): run-all's kernel trains one run after another from the same files,
# and reading, gunzipping and hashing them again cost each run about 0.4 s. A file replaced or
# touched has another key and is read again; the cached arrays are read-only, and callers get copies.
_PAIRS: dict[tuple, tuple[np.ndarray, np.ndarray, dict[str, str]]] = {}


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_pair(folder: Path, images_stem: str, labels_stem: str, num_classes: int,
               checksums: dict[str, str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    images_path = find_idx_file(folder, images_stem)
    labels_path = find_idx_file(folder, labels_stem)
    key = (_file_key(images_path), _file_key(labels_path), num_classes,
           tuple(sorted(checksums.items())) if checksums else None)
    if key not in _PAIRS:
        x, y, digests = _read_and_check_pair(images_path, labels_path, images_stem, labels_stem, num_classes,
                                             checksums)
        x.setflags(write=False)
        y.setflags(write=False)
        while len(_PAIRS) >= 2:  # one dataset's train and test pairs: memory stays that of one load
            _PAIRS.pop(next(iter(_PAIRS)))
        _PAIRS[key] = x, y, digests
    x, y, digests = _PAIRS[key]
    return x.copy(), y.copy(), dict(digests)


def _read_and_check_pair(images_path: Path, labels_path: Path, images_stem: str, labels_stem: str,
                         num_classes: int, checksums: dict[str, str] | None):
    x, x_digest = read_idx_file(images_path, IMAGES_MAGIC, checksums and checksums[images_stem])
    y, y_digest = read_idx_file(labels_path, LABELS_MAGIC, checksums and checksums[labels_stem])
    if len(x) != len(y):
        raise DataError(
            f"{images_path} holds {len(x)} images but {labels_path} holds {len(y)} labels; "
            f"the two files do not belong together. {FIX_HINT}"
        )
    if y.size and int(y.max()) >= num_classes:
        bad = int(np.argmax(y >= num_classes))
        raise DataError(
            f"{labels_path}: label {int(y[bad])} at index {bad} is outside 0-{num_classes - 1}. {FIX_HINT}"
        )
    return x, y, {images_stem: x_digest, labels_stem: y_digest}


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    validation_size: int = 5000,
    seed: int = 0,
    limit: int | None = None,
    verify_checksums: bool = True,
) -> MnistData:
    """Load a dataset and carve a stratified, seeded validation split from its training set.

    Args:
      name: "mnist" or "fashion_mnist".
      data_dir: folder holding one sub-folder per dataset (`mnist/`, `fashion-mnist/`);
        default `default_data_dir()`.
      validation_size: images held out of the 60,000 training images (default 5,000: the
        classic 55k/5k split). 0 keeps all for training. The 10,000 test images are never split.
      seed: seed of the split.
      limit: keep only the first `limit` examples of each of train, validation and test
        (for smoke runs); None keeps all.
      verify_checksums: compare each file's SHA-256 with the published one.

    Returns MnistData with x_* (N, 28, 28) uint8 and y_* (N,) uint8.
    Raises ValueError for an unknown name or invalid sizes, DataError (a ValueError) for a
    missing or malformed file, naming the file and the fix.
    """
    info = dataset_info(name)
    folder = Path(data_dir if data_dir is not None else default_data_dir()) / info.folder
    checksums = info.sha256 if verify_checksums else None
    num_classes = len(info.class_names)
    x_train, y_train, digests = _read_pair(
        folder, FILE_STEMS["train_images"], FILE_STEMS["train_labels"], num_classes, checksums)
    x_test, y_test, test_digests = _read_pair(
        folder, FILE_STEMS["test_images"], FILE_STEMS["test_labels"], num_classes, checksums)
    digests.update(test_digests)

    if not 0 <= validation_size < len(x_train):
        raise ValueError(
            f"validation_size={validation_size} must be in [0, {len(x_train)}) "
            f"(the number of training images)"
        )
    if validation_size:
        x_train, x_val, y_train, y_val = train_test_split(
            x_train, y_train, test_size=validation_size, stratify=y_train, random_state=seed)
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    if limit is not None:
        if not 1 <= limit <= len(x_train):
            raise ValueError(
                f"limit={limit} must be between 1 and {len(x_train)} (the training images of "
                f"{name!r} after the validation split); use None for all"
            )
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_val, y_val = x_val[:limit], y_val[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    return MnistData(x_train, y_train, x_val, y_val, x_test, y_test, info.class_names, digests)


def verify_dataset(name: str, data_dir: str | os.PathLike) -> dict[str, str]:
    """Check that `data_dir` holds dataset `name`'s four files, each matching its published
    SHA-256. Returns {file stem: digest}; raises DataError naming the first bad or missing file."""
    info = dataset_info(name)
    folder = Path(data_dir) / info.folder
    digests = {}
    for stem in FILE_STEMS.values():
        magic = IMAGES_MAGIC if "images" in stem else LABELS_MAGIC
        _, digests[stem] = read_idx_file(find_idx_file(folder, stem), magic, info.sha256[stem])
    return digests
