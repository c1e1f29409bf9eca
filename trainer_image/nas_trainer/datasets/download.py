"""Fetch CIFAR-10 when ``dataset.download`` is set (online clusters only).

Offline, the download fails fast with a message that says where to put the
files by hand; a torn download never leaves a half-extracted dataset behind
(it is fetched to a temporary file, checksummed, then extracted).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from nas_trainer.datasets.errors import DatasetError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ENV_CIFAR10_URL = "KUBENAS_CIFAR10_URL"
"""Override the download URL (a mirror inside the cluster)."""


def download_cifar10(root: Path, timeout: float = 30.0) -> None:
    """Download and extract ``cifar-10-python.tar.gz`` into ``root``."""
    url = os.environ.get(ENV_CIFAR10_URL, CIFAR10_URL)
    manual = (
        f"download cifar-10-python.tar.gz yourself and extract it into {root} "
        f"(or set {ENV_CIFAR10_URL} to a reachable mirror)"
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"dataset.path {root} cannot be created ({exc})") from exc
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        md5 = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, archive.open("wb") as out:
                while chunk := resp.read(1 << 20):
                    md5.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetError(f"could not download CIFAR-10 from {url} ({exc}); {manual}") from exc
        if url == CIFAR10_URL and md5.hexdigest() != CIFAR10_MD5:
            raise DatasetError(f"CIFAR-10 download from {url} is corrupt (md5 mismatch); {manual}")
        try:
            with tarfile.open(archive) as tar:
                safe_extract(tar, root)
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"could not extract {url} into {root} ({exc}); {manual}") from exc


def safe_extract(tar: tarfile.TarFile, root: Path) -> None:
    """Extract refusing links, devices and paths outside ``root`` (Python's 'data' filter when
    this Python has it; base images may ship a Python older than 3.11.4)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(root, filter="data")
        return
    base = root.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(base):
            raise DatasetError(f"refusing to extract {member.name!r}: not a plain file inside {root}")
    tar.extractall(root)  # noqa: S202 - every member was checked above
