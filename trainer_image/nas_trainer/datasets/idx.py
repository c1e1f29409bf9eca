"""``dataset.name: idx``: MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...), gzip or not.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in row-major
order. ``dataset.path`` is a folder holding ``train-images-idx3-ubyte`` and
``train-labels-idx1-ubyte`` (and optionally the ``t10k-`` pair as the test split),
each possibly ``.gz``; Debian's ``dataset-fashion-mnist`` installs exactly that
under ``/usr/share/datasets/fashion-mnist/``.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.images import ImageData
from nas_trainer.datasets.prepare import (
    RawSplit,
    assemble,
    check_images,
    check_labels,
    dataset_path,
)

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_LAYOUT = (
    "a folder holding train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally "
    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte as the test split), each plain or .gz"
)
_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx\d-ubyte(\.gz)?$")


def read_idx(file: Path) -> np.ndarray:
    """One IDX file (plain or gzip) -> array of its shape and type; errors name the file."""
    try:
        raw = file.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"IDX file {file} is unreadable ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetError(
            f"IDX file {file} does not start with an IDX magic number (0x00 0x00 type ndim); "
            f"expected {IDX_LAYOUT}"
        )
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"IDX file {file} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetError(
            f"IDX file {file}: header says shape {shape} ({count * dtype.itemsize} bytes of "
            f"data) but the file holds {len(raw) - header}; it is truncated or not IDX"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(root: Path) -> dict[tuple[str, str], Path]:
    """(split, images|labels) -> file, split being 'train' or 'test' (t10k)."""
    found: dict[tuple[str, str], Path] = {}
    for file in sorted(root.iterdir()):
        match = _NAME.match(file.name)
        if match and file.is_file():
            split = "train" if match.group(1) == "train" else "test"
            found.setdefault((split, match.group(2)), file)
    return found


def images_nchw(images: np.ndarray, file: Path) -> np.ndarray:
    """[N, H, W] (grey) or [N, H, W, C] -> [N, C, H, W]."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3, 4):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    raise DatasetError(
        f"IDX file {file}: images have shape {images.shape}; expected N x H x W (grey) "
        "or N x H x W x C"
    )


def read_pair(images_file: Path, labels_file: Path) -> RawSplit:
    where = f"{images_file} / {labels_file.name}"
    images = check_images(images_nchw(read_idx(images_file), images_file), str(images_file))
    labels = check_labels(read_idx(labels_file), images.shape[0], where)
    return RawSplit(images, labels, where)


def load_idx(spec: DatasetSpec, seed: int) -> ImageData:
    """Train (and test) IDX pairs from ``dataset.path``; validation is held out of train."""
    root = dataset_path(spec, IDX_LAYOUT, folder=True)
    files = find_idx_files(root)
    for kind in ("images", "labels"):
        if ("train", kind) not in files:
            raise DatasetError(f"dataset.path {root}: no train-{kind} IDX file; expected {IDX_LAYOUT}")
    train = read_pair(files["train", "images"], files["train", "labels"])
    test = None
    if ("test", "images") in files and ("test", "labels") in files:
        test = read_pair(files["test", "images"], files["test", "labels"])
    elif ("test", "images") in files or ("test", "labels") in files:
        have = files.get(("test", "images")) or files.get(("test", "labels"))
        raise DatasetError(f"dataset.path {root}: {have} has no matching images/labels file")
    return assemble(spec, seed, train, None, test, flip=False)
