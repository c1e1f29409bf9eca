"""``dataset.name: image-folder``: PNG/JPEG class folders written with Pillow, read back without
torchvision; sizes, channels, the cached statistics and every refusal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import DatasetError, load_dataset
from nas_trainer.datasets.stats_cache import ENV_CACHE_DIR


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE_DIR, str(cache))
    return cache


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_folder(root: Path, classes: dict[str, int], split: str = "train", size: int = 8,
                grey: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        for i in range(count):
            shape = (size, size) if grey else (size, size, 3)
            suffix = ".jpg" if i % 2 else ".png"
            save(root / split / name / f"{i}{suffix}", rng.integers(0, 256, shape, dtype=np.uint8))


def test_train_and_val_folders_give_sorted_classes_and_rgb(tmp_path: Path) -> None:
    make_folder(tmp_path / "pets", {"dog": 6, "cat": 4})
    make_folder(tmp_path / "pets", {"cat": 2, "dog": 1}, split="val")
    (tmp_path / "pets" / "train" / "cat" / "notes.txt").write_text("ignored: not an image")
    data = load_dataset(DatasetSpec(name="image-folder", path=str(tmp_path / "pets")), kind="image")
    assert data.input_shape == (3, 8, 8) and data.num_classes == 2
    assert (len(data.train), len(data.val), data.test) == (10, 3, None)
    assert data.train.labels.tolist() == [0] * 4 + [1] * 6  # cat = 0, dog = 1 (sorted names)
    assert data.classes == ("cat", "dog")
    png = np.array(Image.open(tmp_path / "pets" / "train" / "cat" / "0.png"))
    assert torch.equal(data.train.images[0], torch.from_numpy(png).permute(2, 0, 1))  # PNG lossless
    assert data.flip


def test_mixed_sizes_need_image_size_and_grey_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    make_folder(root, {"a": 3, "b": 3}, size=12, grey=True)
    save(root / "train" / "a" / "wide.png", np.full((10, 20), 200, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"wide.png is 20x10 but .* is 12x12; set dataset.imageSize"):
        load_dataset(DatasetSpec(name="image-folder", path=str(root)))
    data = load_dataset(DatasetSpec(name="image-folder", path=str(root), imageSize=6,
                                    validationSize=2))
    assert data.input_shape == (1, 6, 6)
    assert (len(data.train), len(data.val)) == (5, 2)
    every = torch.cat([data.train.images, data.val.images])
    assert any(bool((img == 200).all()) for img in every)  # the wide one, centre-cropped


def test_channel_statistics_are_cached_and_reused(tmp_path: Path, private_cache: Path) -> None:
    make_folder(tmp_path / "d", {"x": 5, "y": 5})
    spec = DatasetSpec(name="image-folder", path=str(tmp_path / "d"), validationSize=2)
    first = load_dataset(spec)
    files = list(private_cache.glob("stats-*.json"))
    assert len(files) == 1
    cached = json.loads(files[0].read_text())
    assert cached["mean"] == pytest.approx(list(first.mean))
    files[0].write_text(json.dumps({"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]}))
    assert load_dataset(spec).mean == (0.1, 0.2, 0.3)  # read, not recomputed
    make_folder(tmp_path / "d", {"z": 1}, seed=5)  # a changed folder gets its own statistics
    assert load_dataset(spec).mean != (0.1, 0.2, 0.3)


def test_unreadable_files_fail_or_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    root = tmp_path / "d"
    make_folder(root, {"x": 4, "y": 4})
    bad = root / "train" / "y" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is no png")
    with pytest.raises(DatasetError, match=f"{bad} cannot be decoded.*unreadableFiles: skip"):
        load_dataset(DatasetSpec(name="image-folder", path=str(root)))
    with caplog.at_level(logging.WARNING, logger="nas_trainer"):
        data = load_dataset(DatasetSpec(name="image-folder", path=str(root),
                                        unreadableFiles="skip", validationSize=2))
    assert data.skipped_files == 1 and len(data.train) + len(data.val) == 8
    assert "skipped 1 unreadable files" in caplog.text and "broken.png" in caplog.text


def test_layout_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetSpec(name="image-folder", path=str(tmp_path / "none")))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="has no train/ folder"):
        load_dataset(DatasetSpec(name="image-folder", path=str(tmp_path / "flat")))
    root = tmp_path / "d"
    make_folder(root, {"x": 3})
    (root / "train" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"train/empty: class 'empty' has no image files"):
        load_dataset(DatasetSpec(name="image-folder", path=str(root)))
    (root / "train" / "empty").rmdir()
    make_folder(root, {"q": 1}, split="val")
    with pytest.raises(DatasetError, match=r"val: class folders \['q'\] do not exist in train/"):
        load_dataset(DatasetSpec(name="image-folder", path=str(root)))


def test_the_saved_model_names_the_classes(tmp_path: Path) -> None:
    from controller_policy.contract import TrialDocument
    from nas_trainer.model_output import input_description

    make_folder(tmp_path / "pets", {"dog": 3, "cat": 3})
    spec = DatasetSpec(name="image-folder", path=str(tmp_path / "pets"), validationSize=2)
    described = input_description(load_dataset(spec), TrialDocument(search="s", trial="t"))
    assert described["classes"] == ["cat", "dog"] and described["numClasses"] == 2
