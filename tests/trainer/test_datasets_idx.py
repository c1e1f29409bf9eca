"""``dataset.name: idx``: generated MNIST-format files (plain and gzip), their error cases, and the
real Fashion-MNIST of Debian's ``dataset-fashion-mnist`` package where it is installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import DatasetError, load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """An IDX file as the MNIST page describes it: 0, 0, type 0x08, ndim, big-endian dims, data."""
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_idx_folder(root: Path, n_train: int = 40, n_test: int = 12, size: int = 10,
                    gz: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n_train, size, size), dtype=np.uint8)
    y_train = np.arange(n_train, dtype=np.uint8) % 5
    x_test = rng.integers(0, 256, (n_test, size, size), dtype=np.uint8)
    y_test = np.arange(n_test, dtype=np.uint8) % 5
    write_idx(root / "train-images-idx3-ubyte", x_train, gz=gz)
    write_idx(root / "train-labels-idx1-ubyte", y_train, gz=gz)
    write_idx(root / "t10k-images-idx3-ubyte", x_test, gz=gz)
    write_idx(root / "t10k-labels-idx1-ubyte", y_test, gz=gz)
    return x_train, y_train, x_test, y_test


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_files_load_verbatim_with_a_held_out_validation_split(tmp_path: Path, gz: bool) -> None:
    x_train, y_train, x_test, y_test = make_idx_folder(tmp_path / "mnist", gz=gz)
    data = load_dataset(DatasetSpec(name="idx", path=str(tmp_path / "mnist")), kind="image")
    assert data.input_shape == (1, 10, 10) and data.num_classes == 5
    assert (len(data.train), len(data.val), len(data.test)) == (36, 4, 12)  # 10% held out
    assert torch.equal(data.test.images[:, 0], torch.from_numpy(x_test))
    assert data.test.labels.tolist() == y_test.tolist()
    # train + val are exactly the training file, nothing lost or shared
    every = sorted(tuple(r.tolist()) for r in torch.cat([data.train.images, data.val.images]).flatten(1))
    assert every == sorted(tuple(r.tolist()) for r in torch.from_numpy(x_train).flatten(1))
    assert data.mean[0] == pytest.approx(float(data.train.images.double().mean() / 255), abs=0.02)
    assert not data.flip


def test_idx_image_size_and_channels_and_caps(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "m", n_train=50, size=12)
    spec = DatasetSpec(name="idx", path=str(tmp_path / "m"), imageSize=6, channels=3,
                       validationSize=10, maxTrainExamples=20)
    data = load_dataset(spec)
    assert data.input_shape == (3, 6, 6)
    assert (len(data.train), len(data.val)) == (20, 10)
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # grey repeated


def test_idx_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetSpec(name="idx", path=str(tmp_path / "nowhere")))
    root = tmp_path / "m"
    make_idx_folder(root)
    (root / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="no train-labels IDX file"):
        load_dataset(DatasetSpec(name="idx", path=str(root)))
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(39, dtype=np.uint8))
    with pytest.raises(DatasetError, match="39 labels for 40 images"):
        load_dataset(DatasetSpec(name="idx", path=str(root)))
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-7])
    with pytest.raises(DatasetError, match=f"{images}.*truncated"):
        load_dataset(DatasetSpec(name="idx", path=str(root)))
    images.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DatasetError, match="IDX magic"):
        load_dataset(DatasetSpec(name="idx", path=str(root)))
    with pytest.raises(DatasetError, match="dataset.path is required"):
        load_dataset(DatasetSpec(name="idx"))


def test_built_in_datasets_refuse_image_size(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset.imageSize applies to image-folder"):
        load_dataset(DatasetSpec(name="digits", imageSize=16))


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION} "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_package() -> None:
    data = load_dataset(DatasetSpec(name="idx", path=str(FASHION), validationSize=5000),
                        kind="image")
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10  # the balanced test set
    assert 0.25 < data.mean[0] < 0.35 and 0.3 < data.std[0] < 0.4  # Fashion-MNIST: ~0.286, ~0.353
