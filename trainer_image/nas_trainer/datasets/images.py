"""Image classification data: CIFAR-10 (python-pickle batches), scikit-learn digits, synthetic.

Images stay ``uint8`` until a batch is drawn (CIFAR-10 is 150 MB that way, not
600 MB), and the whole split can move to the GPU once. The train/validation/test
split depends only on the dataset and a split seed, never on the trial, so every
trial of a search is scored on the same validation images.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.augment import cutout, random_crop, random_flip
from nas_trainer.datasets.errors import DatasetError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_LAYOUT = (
    "a directory holding the python version of CIFAR-10 (cifar-10-python.tar.gz, "
    "extracted): data_batch_1 .. data_batch_5 and test_batch, each a pickled dict with "
    "b'data' (N x 3072 uint8, channel-major 32x32) and b'labels' (N ints in 0..9)"
)


@dataclass(frozen=True)
class ImageSplit:
    images: torch.Tensor
    """uint8 [N, C, H, W]."""
    labels: torch.Tensor
    """int64 [N]."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> ImageSplit:
        return ImageSplit(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class ImageData:
    """A split image dataset plus how to normalize and augment it."""

    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit | None
    num_classes: int
    scale: float
    """Multiplier from stored uint8 values to [0, 1]."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int
    """Pad-crop augmentation margin in pixels (0 = none)."""
    flip: bool
    """Horizontal flips make sense (not for digits: a mirrored 2 is not a 2)."""
    skipped_files: int = 0
    """Unreadable files left out (image-folder with ``unreadableFiles: skip``)."""
    classes: tuple[str, ...] | None = None
    """Class names by label, where the data names them (image-folder: the folder names)."""

    kind = "image"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device) -> ImageData:
        test = self.test.to(device) if self.test is not None else None
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=test)

    @cached_property
    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std as [1, C, 1, 1] tensors on the data's device (built once)."""
        device = self.train.images.device
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> float, standardized per channel."""
        mean, std = self._stats
        return images.float().mul_(self.scale).sub_(mean).div_(std)

    def augment(self, images: torch.Tensor, cutout_size: int, gen: torch.Generator) -> torch.Tensor:
        """uint8 batch -> augmented, normalized float batch (pad-crop, flip, then cutout)."""
        x = images.float().mul_(self.scale)
        x = random_crop(x, self.crop_pad, gen)
        if self.flip:
            x = random_flip(x, gen)
        mean, std = self._stats
        return cutout((x - mean) / std, cutout_size, gen)


def split_train_val(
    images: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec, default_val: int, seed: int
) -> tuple[ImageSplit, ImageSplit]:
    """Hold ``validationSize`` random training examples out for validation (Zoph & Le: 5000)."""
    n = int(labels.shape[0])
    n_val = spec.validationSize if spec.validationSize is not None else default_val
    if n_val >= n:
        raise DatasetError(
            f"dataset.validationSize={n_val} leaves no training examples ({spec.name} has "
            f"{n} training examples); choose a value below {n}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if spec.maxTrainExamples is not None:
        train_idx = train_idx[: spec.maxTrainExamples]
    # Sorted indices keep memory access sequential; order is shuffled per epoch anyway.
    train_idx, val_idx = train_idx.sort().values, val_idx.sort().values
    return (
        ImageSplit(images[train_idx].contiguous(), labels[train_idx].contiguous()),
        ImageSplit(images[val_idx].contiguous(), labels[val_idx].contiguous()),
    )


# --- digits -----------------------------------------------------------------------------------
DIGITS_TEST_SIZE = 297
DIGITS_DEFAULT_VAL = 300


def load_digits_data(spec: DatasetSpec, seed: int) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16): the offline demo dataset."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # [N,1,8,8]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(10_000 + seed))
    test_idx, rest_idx = perm[:DIGITS_TEST_SIZE].sort().values, perm[DIGITS_TEST_SIZE:]
    train, val = split_train_val(images[rest_idx], labels[rest_idx], spec, DIGITS_DEFAULT_VAL, seed)
    x = train.images.double() / 16.0
    return ImageData(
        name="digits",
        train=train,
        val=val,
        test=ImageSplit(images[test_idx], labels[test_idx]),
        num_classes=10,
        scale=1.0 / 16.0,
        mean=(float(x.mean()),),
        std=(float(x.std()),),
        crop_pad=1,
        flip=False,
    )


# --- synthetic --------------------------------------------------------------------------------
def load_synthetic_images(spec: DatasetSpec, seed: int) -> ImageData:
    """Random 3x32x32 images with random labels: for shapes and speed, nothing to learn."""
    gen = torch.Generator().manual_seed(seed)
    n_train = spec.maxTrainExamples or 512
    n_val = spec.validationSize or 128

    def make(n: int) -> ImageSplit:
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
        return ImageSplit(images, torch.randint(0, 10, (n,), generator=gen))

    return ImageData(
        name="synthetic",
        train=make(n_train),
        val=make(n_val),
        test=make(128),
        num_classes=10,
        scale=1.0 / 255.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.2887, 0.2887, 0.2887),  # uniform on [0, 1]
        crop_pad=4,
        flip=True,
    )


# --- CIFAR-10 ---------------------------------------------------------------------------------
def find_cifar10_dir(path: Path) -> Path | None:
    """``path`` itself or its ``cifar-10-batches-py`` child, whichever holds the batches."""
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / CIFAR10_TRAIN_FILES[0]).is_file():
            return candidate
    return None


def read_cifar10_batch(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One python-pickle batch -> (uint8 [N,3,32,32], int64 [N]); errors name the file."""
    if not file.is_file():
        raise DatasetError(f"CIFAR-10 file {file} is missing; expected {CIFAR10_LAYOUT}")
    try:
        with file.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DatasetError(
            f"CIFAR-10 file {file} is not a python pickle ({exc}); expected {CIFAR10_LAYOUT}"
        ) from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"CIFAR-10 file {file} holds a {type(batch).__name__}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"CIFAR-10 file {file} lacks b'data' or b'labels'; expected {CIFAR10_LAYOUT}")
    data = np.asarray(data)
    labels_arr = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DatasetError(
            f"CIFAR-10 file {file}: b'data' has shape {data.shape} and dtype {data.dtype}; "
            "expected N x 3072 uint8"
        )
    if labels_arr.shape != (data.shape[0],):
        raise DatasetError(
            f"CIFAR-10 file {file}: {labels_arr.shape[0]} labels for {data.shape[0]} images"
        )
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() > 9):
        raise DatasetError(f"CIFAR-10 file {file}: labels must lie in 0..9")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels_arr)


def load_cifar10(spec: DatasetSpec, seed: int) -> ImageData:
    """CIFAR-10 from ``dataset.path``; 5000 training images held out for validation by default."""
    if not spec.path:
        raise DatasetError(f"dataset.path is required for cifar10: {CIFAR10_LAYOUT}")
    root = Path(spec.path)
    folder = find_cifar10_dir(root)
    if folder is None and spec.download:
        from nas_trainer.datasets.download import download_cifar10

        download_cifar10(root)
        folder = find_cifar10_dir(root)
    if folder is None:
        hint = "" if spec.download else " (or set dataset.download: true when online)"
        raise DatasetError(f"dataset.path {root}: no CIFAR-10 found; expected {CIFAR10_LAYOUT}{hint}")
    parts = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    train, val = split_train_val(images, labels, spec, 5000, seed)
    test_images, test_labels = read_cifar10_batch(folder / CIFAR10_TEST_FILE)
    return ImageData(
        name="cifar10",
        train=train,
        val=val,
        test=ImageSplit(test_images, test_labels),
        num_classes=10,
        scale=1.0 / 255.0,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        crop_pad=4,
        flip=True,
    )
