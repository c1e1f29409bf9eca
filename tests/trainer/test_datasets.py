"""Dataset loaders read the real on-disk formats; bad data fails naming the path and layout."""

from __future__ import annotations

import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import DatasetError, load_dataset
from nas_trainer.datasets.augment import cutout, random_crop, random_flip
from nas_trainer.datasets.download import safe_extract
from nas_trainer.datasets.text import EOS, UNK


def write_cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """One batch in the python-pickle CIFAR-10 format (bytes keys, N x 3072 uint8)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, size=n)]
    with path.open("wb") as fh:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, fh)
    return data, labels


@pytest.fixture()
def cifar_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        write_cifar_batch(root / f"data_batch_{i}", 12, seed=i)
    write_cifar_batch(root / "test_batch", 10, seed=99)
    return root


def test_cifar10_reads_pickle_batches_and_holds_out_validation(cifar_dir: Path) -> None:
    data = load_dataset(DatasetSpec(name="cifar10", path=str(cifar_dir), validationSize=20))
    assert data.input_shape == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 20, 10)
    # The test batch is read verbatim: image 0, channel-major, labels as written.
    raw, labels = write_cifar_batch(cifar_dir / "unused", 10, seed=99)
    assert torch.equal(data.test.images[0], torch.from_numpy(raw[0].reshape(3, 32, 32)))
    assert data.test.labels.tolist() == labels
    # Train and validation together are exactly the 60 training images (nothing lost or shared).
    every = torch.cat([data.train.images, data.val.images]).flatten(1)
    assert len({tuple(row.tolist()) for row in every}) == 60


def test_cifar10_accepts_the_parent_directory_and_a_fixed_split(cifar_dir: Path) -> None:
    spec = DatasetSpec(name="cifar10", path=str(cifar_dir.parent), validationSize=20)
    a, b = load_dataset(spec, seed=0), load_dataset(spec, seed=0)
    assert torch.equal(a.val.images, b.val.images)
    c = load_dataset(spec, seed=1)
    assert not torch.equal(a.val.images, c.val.images)


def test_cifar10_default_validation_is_5000(cifar_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.validationSize=5000 leaves no training"):
        load_dataset(DatasetSpec(name="cifar10", path=str(cifar_dir)))


def test_cifar10_max_train_examples_caps_training_only(cifar_dir: Path) -> None:
    data = load_dataset(
        DatasetSpec(name="cifar10", path=str(cifar_dir), validationSize=20, maxTrainExamples=7)
    )
    assert (len(data.train), len(data.val)) == (7, 20)


def test_cifar10_missing_directory_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetSpec(name="cifar10", path=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "data_batch_1" in str(err.value) and "test_batch" in str(err.value)


def test_cifar10_needs_a_path() -> None:
    with pytest.raises(DatasetError, match=r"dataset\.path is required for cifar10"):
        load_dataset(DatasetSpec(name="cifar10"))


def test_cifar10_missing_batch_file_is_named(cifar_dir: Path) -> None:
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3 is missing"):
        load_dataset(DatasetSpec(name="cifar10", path=str(cifar_dir), validationSize=5))


def test_cifar10_corrupt_and_misshapen_batches_are_named(cifar_dir: Path) -> None:
    (cifar_dir / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_2 is not a python pickle"):
        load_dataset(DatasetSpec(name="cifar10", path=str(cifar_dir), validationSize=5))
    with (cifar_dir / "data_batch_2").open("wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, fh)
    with pytest.raises(DatasetError, match=r"data_batch_2: b'data' has shape \(4, 100\)"):
        load_dataset(DatasetSpec(name="cifar10", path=str(cifar_dir), validationSize=5))


def test_cifar10_download_offline_fails_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBENAS_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    target = tmp_path / "cifar"
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetSpec(name="cifar10", path=str(target), download=True))
    message = str(err.value)
    assert "could not download CIFAR-10 from http://127.0.0.1:9" in message
    assert f"extract it into {target}" in message
    assert not any(target.iterdir()), "a failed download must leave nothing behind"


def test_digits_is_bundled_split_and_normalized() -> None:
    data = load_dataset(DatasetSpec(name="digits"))
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert len(data.val) == 300
    x = data.normalize(data.train.images)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    assert set(data.train.labels.tolist()) == set(range(10))


def test_digits_augmentation_keeps_shape_and_never_flips() -> None:
    data = load_dataset(DatasetSpec(name="digits", validationSize=100))
    assert not data.flip and data.crop_pad == 1
    batch = data.train.images[:64]
    out = data.augment(batch, cutout_size=0, gen=torch.Generator().manual_seed(0))
    assert out.shape == (64, 1, 8, 8) and out.dtype == torch.float32


def test_synthetic_follows_the_space_kind() -> None:
    images = load_dataset(DatasetSpec(name="synthetic", maxTrainExamples=32), kind="image")
    assert images.input_shape == (3, 32, 32) and len(images.train) == 32
    text = load_dataset(DatasetSpec(name="synthetic", maxTrainExamples=300), kind="language")
    assert text.train.numel() == 300 and text.vocab_size == 100


def test_dataset_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"dataset\.name 'digits' is image data .* language"):
        load_dataset(DatasetSpec(name="digits"), kind="language")


# --- text ---------------------------------------------------------------------------------------
def write_ptb(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ptb.train.txt").write_text(" the cat sat \n the dog sat <unk> \n")
    (root / "ptb.valid.txt").write_text(" the cat ran \n")
    (root / "ptb.test.txt").write_text(" a dog sat \n")


def test_ptb_builds_vocab_from_train_and_maps_unseen_words_to_unk(tmp_path: Path) -> None:
    write_ptb(tmp_path)
    data = load_dataset(DatasetSpec(name="ptb", path=str(tmp_path)))
    words = lambda ids: [data.vocab[i] for i in ids.tolist()]  # noqa: E731
    assert words(data.train) == ["the", "cat", "sat", EOS, "the", "dog", "sat", UNK, EOS]
    assert words(data.valid) == ["the", "cat", UNK, EOS]  # "ran" never occurs in training
    assert words(data.test) == [UNK, "dog", "sat", EOS]
    # Most frequent first, ties alphabetical: a deterministic vocabulary.
    assert data.vocab == (EOS, "sat", "the", UNK, "cat", "dog")


def test_ptb_missing_file_names_path_and_layout(tmp_path: Path) -> None:
    write_ptb(tmp_path)
    (tmp_path / "ptb.valid.txt").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetSpec(name="ptb", path=str(tmp_path)))
    assert str(tmp_path / "ptb.valid.txt") in str(err.value)
    assert "ptb.train.txt, ptb.valid.txt and ptb.test.txt" in str(err.value)


def test_pydoc_text_is_bundled_deterministic_and_disjoint() -> None:
    a = load_dataset(DatasetSpec(name="pydoc-text"))
    b = load_dataset(DatasetSpec(name="pydoc-text"))
    assert torch.equal(a.train, b.train) and a.vocab == b.vocab
    assert a.train.numel() > 80_000 and a.valid.numel() > 5_000 and a.test.numel() > 1_000
    assert 1_000 < a.vocab_size < 5_000
    assert "def" in a.vocab and "class" in a.vocab
    capped = load_dataset(DatasetSpec(name="pydoc-text", validationSize=500, maxTrainExamples=1000))
    assert capped.valid.numel() == 500 and capped.train.numel() == 1000
    assert torch.equal(capped.valid, a.valid[:500])


# --- augmentation -----------------------------------------------------------------------------
def test_random_crop_translates_by_at_most_pad_pixels() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = random_crop(x, 2, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    for img_out, img in zip(out, x, strict=True):
        shifts = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
            if torch.equal(img_out, _shift(img, dy, dx))
        ]
        assert shifts, "every crop is the image shifted by at most the padding, zero-filled"


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
    return padded[:, 2 + dy : 2 + dy + img.shape[1], 2 + dx : 2 + dx + img.shape[2]]


def test_flip_mirrors_some_images_and_keeps_others() -> None:
    x = torch.randn(64, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_one_square_per_image() -> None:
    x = torch.ones(16, 3, 12, 12)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))
    assert ((zeros >= 4) & (zeros <= 16)).all()  # 4x4, or clipped at a border
    assert (zeros == 16).any()


def test_cifar10_download_fetches_and_extracts_the_archive(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    payload = archive.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("KUBENAS_CIFAR10_URL", f"http://127.0.0.1:{server.server_port}/c.tar.gz")
        target = tmp_path / "fresh"
        data = load_dataset(DatasetSpec(name="cifar10", path=str(target), download=True, validationSize=20))
    finally:
        server.shutdown()
    assert (target / "cifar-10-batches-py" / "test_batch").is_file()
    assert (len(data.train), len(data.test)) == (40, 10)


def test_cifar10_archive_with_an_escaping_path_is_refused(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar, pytest.raises(Exception, match="evil|outside"):
        safe_extract(tar, tmp_path / "root")
    assert not (tmp_path / "evil").exists()
