"""Loop checkpoints: one self-checking blob, stored through a small interface.

A checkpoint is the ledger (JSON), the loop's counters and the strategy's
``to_bytes()`` together, so a restore never pairs a strategy with a ledger
from another moment. The blob carries a magic header, lengths and a SHA-256
trailer: a torn or foreign blob is refused with a clear error instead of
resuming a corrupt search.

``CheckpointStore`` is storage-agnostic (the operator keeps blobs in
ConfigMaps, the local runner in its output folder); ``DirectoryCheckpointStore``
writes through ``controller_policy.files.atomic_write`` (temporary file, fsync, rename), so a crash
mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller_policy.files import atomic_write

MAGIC = b"KUBENAS-CKPT\x01"
FORMAT_VERSION = 1
_LENGTHS = struct.Struct(">QQ")


class CheckpointError(ValueError):
    """A checkpoint blob that cannot be trusted (torn, foreign, or from a newer format)."""


@dataclass
class LoopCheckpoint:
    """What a loop needs to continue exactly: its state (JSON-able) and the strategy's bytes."""

    state: dict[str, Any]
    strategy: bytes


def encode_checkpoint(checkpoint: LoopCheckpoint) -> bytes:
    return encode_checkpoint_text(json.dumps(checkpoint.state, separators=(",", ":")),
                                  checkpoint.strategy)


def encode_checkpoint_text(state_json: str, strategy: bytes) -> bytes:
    """Like ``encode_checkpoint`` for a state already encoded as JSON text (large ledgers
    are assembled from cached pieces rather than re-encoded)."""
    header = f'{{"version":{FORMAT_VERSION},"state":{state_json}}}'.encode()
    body = MAGIC + _LENGTHS.pack(len(header), len(strategy)) + header + strategy
    return body + hashlib.sha256(body).digest()


def decode_checkpoint(blob: bytes) -> LoopCheckpoint:
    if not blob.startswith(MAGIC):
        raise CheckpointError("not a kubenas checkpoint (bad magic header)")
    if len(blob) < len(MAGIC) + _LENGTHS.size + 32:
        raise CheckpointError("checkpoint is truncated")
    body, digest = blob[:-32], blob[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError("checkpoint checksum mismatch (torn or corrupted write)")
    header_len, strategy_len = _LENGTHS.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + _LENGTHS.size
    if start + header_len + strategy_len != len(body):
        raise CheckpointError("checkpoint lengths do not add up")
    header = json.loads(body[start : start + header_len])
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {header.get('version')} is not supported (expected {FORMAT_VERSION})"
        )
    strategy = body[start + header_len :]
    return LoopCheckpoint(state=header["state"], strategy=bytes(strategy))


class CheckpointStore(ABC):
    """Keeps the latest checkpoint blob of each search, atomically."""

    @abstractmethod
    async def save(self, key: str, blob: bytes) -> str:
        """Replace the checkpoint of ``key`` (all or nothing); return a reference for the status."""

    @abstractmethod
    async def load(self, key: str) -> bytes | None:
        """The latest blob of ``key``, or None if there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget ``key`` (no error if absent)."""


class MemoryCheckpointStore(CheckpointStore):
    """Blobs in a dict: one process's lifetime only (tests, benchmarks, throwaway runs)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.saves = 0

    async def save(self, key: str, blob: bytes) -> str:
        self.blobs[key] = bytes(blob)
        self.saves += 1
        return f"memory:{key}"

    async def load(self, key: str) -> bytes | None:
        return self.blobs.get(key)

    async def delete(self, key: str) -> None:
        self.blobs.pop(key, None)


class DirectoryCheckpointStore(CheckpointStore):
    """One file per key in a directory; write-to-temp, fsync, rename (crash-safe)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith(".") or "\\" in key:
            raise ValueError(f"checkpoint key {key!r} must be a plain file name")
        return self.directory / f"{key}.ckpt"

    async def save(self, key: str, blob: bytes) -> str:
        target = self.path(key)
        await asyncio.to_thread(atomic_write, target, blob)
        return str(target)

    async def load(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
