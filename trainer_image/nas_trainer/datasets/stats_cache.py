"""Channel statistics of an image folder, computed once per folder state and cached on disk.

Every trial of a search loads the same folder; decoding is unavoidable, but the
mean/std pass is not. The key hashes the training files' relative paths, sizes
and modification times plus the settings that change the pixels (channels,
imageSize), so an edited folder gets new statistics. The cache lives in
``$KUBENAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/kubenas`` or ``~/.cache/kubenas``,
else the temporary folder (a trial pod's root filesystem is read-only, /tmp is not).
A cache that cannot be written only costs the recomputation.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas_trainer.datasets.prepare import Stats

ENV_CACHE_DIR = "KUBENAS_CACHE_DIR"


def listing_key(items: list[tuple[Path, int]], settings: dict[str, Any]) -> str:
    """Hash of (path, label, size, mtime) of every file plus ``settings``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for file, label in items:
        st = file.stat()
        digest.update(f"{file.resolve()}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def default_cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    home = Path(xdg) if xdg else Path.home() / ".cache"
    for candidate in (home / "kubenas", Path(tempfile.gettempdir()) / "kubenas-cache"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    return Path(tempfile.gettempdir())


class StatsCache:
    """``stats-<key>.json`` files holding {"mean": [...], "std": [...]}."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def default(cls) -> StatsCache:
        return cls(default_cache_dir())

    def file(self, key: str) -> Path:
        return self.folder / f"stats-{key}.json"

    def get(self, key: str) -> Stats | None:
        try:
            raw = json.loads(self.file(key).read_text())
            return tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, stats: Stats) -> None:
        """Write atomically (rename), so a concurrent trial never reads half a file."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".stats-")
            with os.fdopen(fd, "w") as fh:
                json.dump({"mean": list(stats[0]), "std": list(stats[1])}, fh)
            os.replace(tmp, self.file(key))
        except OSError:
            return

    def get_or_compute(self, key: str, compute: Callable[[], Stats]) -> Stats:
        cached = self.get(key)
        if cached is not None:
            return cached
        stats = compute()
        self.put(key, stats)
        return stats
