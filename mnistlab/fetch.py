"""Filling the data directory (`make data`): copy from a local mirror or download, then verify."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from mnistlab.data import FILE_STEMS, IMAGES_MAGIC, LABELS_MAGIC, DataError, dataset_info, find_idx_file, read_idx_file

# Public mirrors, from ../shared/data/README.md, tried in order when no local mirror has a file.
PUBLIC_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
DOWNLOAD_TIMEOUT_SECONDS = 60


def _magic_for(stem: str) -> int:
    return IMAGES_MAGIC if "images" in stem else LABELS_MAGIC


def _verify(path: Path, name: str, stem: str) -> None:
    read_idx_file(path, _magic_for(stem), dataset_info(name).sha256[stem])


def _is_valid(path: Path, name: str, stem: str) -> bool:
    try:
        _verify(path, name, stem)
        return True
    except DataError:
        return False


def fetch_dataset(name: str, data_dir: str | os.PathLike, mirror: str | os.PathLike | None = None,
                  log=print) -> Path:
    """Make `data_dir/<folder>/` hold the four verified files of dataset `name`.

    A file already there and valid is kept. A missing or invalid one is copied from
    `mirror/<folder>/` when that exists, else downloaded from the public mirrors; each new
    file is written to a temporary name, verified against its SHA-256, then renamed, so a
    failed copy never leaves a half-written file. Returns the dataset folder.
    Raises DataError when a file cannot be had or does not verify.
    """
    info = dataset_info(name)
    dest = Path(data_dir) / info.folder
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        raise DataError(f"data directory {data_dir}: cannot create {dest} there ({e.strerror}); "
                        "point --data-dir (or MNISTLAB_DATA_DIR) at a folder") from None
    source = Path(mirror) / info.folder if mirror else None
    for stem in FILE_STEMS.values():
        try:
            existing = find_idx_file(dest, stem)
            if _is_valid(existing, name, stem):
                log(f"ok       {existing}")
                continue
        except DataError:
            pass
        target = dest / f"{stem}.gz"
        with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{stem}.", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            if source is not None and source.is_dir():
                origin = find_idx_file(source, stem)
                shutil.copyfile(origin, tmp_path)
                target = dest / origin.name
            else:
                origin = _download(name, stem, tmp_path)
            _verify(tmp_path, name, stem)
            os.replace(tmp_path, target)
            log(f"fetched  {target}  (from {origin}, SHA-256 verified)")
        finally:
            tmp_path.unlink(missing_ok=True)
    return dest


def _download(name: str, stem: str, path: Path) -> str:
    errors = []
    for base in PUBLIC_MIRRORS[name]:
        url = f"{base}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f)
            return url
        except OSError as e:
            errors.append(f"{url}: {e}")
    raise DataError(
        f"Could not download {stem}.gz:\n  " + "\n  ".join(errors)
        + "\nOn a machine without internet, point DATA_MIRROR (make data DATA_MIRROR=...) at a "
        "folder holding mnist/ and fashion-mnist/, such as ../shared/data."
    )
