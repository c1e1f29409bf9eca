"""``dataset.name: arrays``: an .npz a user saved with numpy, its layouts and its error cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import DatasetError, load_dataset


def test_channels_last_uint8_with_own_validation_and_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    xv = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    file = tmp_path / "mine.npz"
    np.savez(file, x_train=x, y_train=np.arange(30) % 3, x_val=xv, y_val=np.array([0, 1, 2, 3, 0, 1]),
             x_test=x[:4], y_test=np.zeros(4, dtype=np.int32))
    data = load_dataset(DatasetSpec(name="arrays", path=str(file)), kind="image")
    assert data.input_shape == (3, 8, 8) and data.num_classes == 4  # label 3 appears in val only
    assert (len(data.train), len(data.val), len(data.test)) == (30, 6, 4)
    assert torch.equal(data.val.images.permute(0, 2, 3, 1), torch.from_numpy(xv))
    assert data.scale == pytest.approx(1 / 255)


def test_float_channels_first_is_standardised_by_its_own_statistics(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(5.0, 2.0, (200, 1, 6, 6)).astype(np.float32)
    file = tmp_path / "f.npz"
    np.savez(file, x_train=x, y_train=np.arange(200) % 2)
    data = load_dataset(DatasetSpec(name="arrays", path=str(file), validationSize=50))
    assert data.train.images.dtype == torch.float32 and data.scale == 1.0
    assert (len(data.train), len(data.val)) == (150, 50)
    assert data.mean[0] == pytest.approx(5.0, abs=0.1) and data.std[0] == pytest.approx(2.0, abs=0.1)
    normalized = data.normalize(data.train.images)
    assert float(normalized.mean()) == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x_train": np.zeros((4, 5, 5))}, r"y_train is missing"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(3)}, r"3 labels for 4 images"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.array([0, 1, 0.5, 1])}, r"whole class numbers"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.array([0, -1, 0, 1])}, r"must be >= 0"),
    ({"x_train": np.zeros((4, 5)), "y_train": np.zeros(4)}, r"x_train\] has shape \(4, 5\)"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(4), "labels": np.zeros(4)},
     r"unknown arrays \['labels'\]"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(4), "x_val": np.zeros((2, 6, 6)),
      "y_val": np.zeros(2)}, r"x_val\]: images are \(1, 6, 6\).*training images are \(1, 5, 5\)"),
    ({"x_train": np.full((4, 5, 5), np.nan), "y_train": np.zeros(4)}, r"NaN"),
])
def test_bad_arrays_are_refused_naming_the_array(tmp_path: Path, arrays: dict, message: str) -> None:
    file = tmp_path / "bad.npz"
    np.savez(file, **arrays)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(DatasetSpec(name="arrays", path=str(file), validationSize=1))
    assert str(file) in str(info.value)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetSpec(name="arrays", path=str(tmp_path / "none.npz")))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(DatasetSpec(name="arrays", path=str(junk)))
