"""Controller checkpoints in ConfigMap ``binaryData``, owned by the NASSearch.

One ConfigMap, ``<search>-checkpoint``, is the pointer: it names the current
generation, its size, SHA-256 and where the bytes are. A checkpoint up to
``CHUNK_BYTES`` lives inline in the pointer, so the common save is one atomic
object write. A larger one (an LSTM controller with its Adam moments is over
1 MB) is split over chunk ConfigMaps in one of two slots,
``<search>-checkpoint-a-<i>`` and ``-b-<i>``: a save writes every chunk into
the slot the pointer does *not* name, and only then flips the pointer to it
(one write). A crash at any moment leaves the pointer naming a complete,
checksummed checkpoint: the new one or the previous one, never a mix. Slots
are rewritten in place, so saving costs one write per chunk plus one, and
nothing accumulates (chunks left over when a checkpoint shrinks are never read
and go with the search).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from nas_operator.checkpoint import CheckpointError, CheckpointStore
from nas_operator.kube.api import CONFIGMAPS, ApiError, KubeApi
from nas_operator.kube.labels import (
    LABEL_CHECKPOINT,
    checkpoint_name,
    common_labels,
    owner_reference,
)

CHUNK_BYTES = 900 * 1024
"""Bytes per ConfigMap: under the 1 MiB object data limit with room for metadata."""
BLOB_KEY = "checkpoint"
SLOTS = ("a", "b")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def chunk_name(search: str, slot: str, index: int) -> str:
    return f"{checkpoint_name(search)}-{slot}-{index}"


class ConfigMapCheckpointStore(CheckpointStore):
    """Keeps one search's latest checkpoint; the ``key`` argument is the search name."""

    def __init__(self, api: KubeApi, namespace: str, owner: dict[str, Any],
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.api = api
        self.namespace = namespace
        self.owner = owner
        self.chunk_bytes = chunk_bytes
        self.closed = False
        """Set when the search is being deleted: saves become no-ops (the owner is going)."""
        self.saves = 0
        self.bytes_written = 0
        self._pointer_info: dict[str, str] | None = None
        self._existing: set[str] = set()

    # -- helpers ------------------------------------------------------------------------
    def _meta(self, key: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**common_labels(key, "checkpoint"), LABEL_CHECKPOINT: key},
            "ownerReferences": [owner_reference(self.owner)],
        }

    async def _write(self, key: str, name: str, data: dict[str, str] | None,
                     binary: dict[str, str | None]) -> None:
        """Create the ConfigMap or overwrite its data (a ``None`` value removes that key)."""
        if name in self._existing:
            try:
                await self.api.patch(CONFIGMAPS, self.namespace, name,
                                     {"data": data, "binaryData": binary})
                return
            except ApiError as exc:
                if not exc.not_found:
                    raise
                self._existing.discard(name)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(key, name),
                "binaryData": {k: v for k, v in binary.items() if v is not None}}
        if data is not None:
            body["data"] = data
        try:
            await self.api.create(CONFIGMAPS, self.namespace, body)
        except ApiError as exc:
            if not exc.conflict:
                raise
            await self.api.patch(CONFIGMAPS, self.namespace, name,
                                 {"data": data, "binaryData": binary})
        self._existing.add(name)

    async def _current(self, key: str) -> dict[str, str]:
        if self._pointer_info is None:
            pointer = await self.api.find(CONFIGMAPS, self.namespace, checkpoint_name(key))
            self._remember(key, pointer)
        assert self._pointer_info is not None
        return self._pointer_info

    def _remember(self, key: str, pointer: dict[str, Any] | None) -> None:
        self._pointer_info = dict((pointer or {}).get("data") or {})
        if pointer is not None:
            self._existing.add(checkpoint_name(key))

    # -- CheckpointStore ----------------------------------------------------------------
    async def save(self, key: str, blob: bytes) -> str:
        name = checkpoint_name(key)
        ref = f"configmap/{name}"
        if self.closed:
            return ref
        current = await self._current(key)
        generation = int(current.get("generation", "0") or 0) + 1
        info = {"generation": str(generation), "bytes": str(len(blob)),
                "sha256": hashlib.sha256(blob).hexdigest()}
        if len(blob) <= self.chunk_bytes:
            info.update(chunks="0", slot="")
            await self._write(key, name, info, {BLOB_KEY: _b64(blob)})
        else:
            slot = SLOTS[1] if current.get("slot") == SLOTS[0] else SLOTS[0]
            pieces = [blob[i:i + self.chunk_bytes] for i in range(0, len(blob), self.chunk_bytes)]
            await asyncio.gather(*(self._write(key, chunk_name(key, slot, i), None,
                                               {BLOB_KEY: _b64(piece)})
                                   for i, piece in enumerate(pieces)))
            info.update(chunks=str(len(pieces)), slot=slot)
            await self._write(key, name, info, {BLOB_KEY: None})  # the flip
        self._pointer_info = info
        self.saves += 1
        self.bytes_written += len(blob)
        return ref

    async def load(self, key: str) -> bytes | None:
        pointer = await self.api.find(CONFIGMAPS, self.namespace, checkpoint_name(key))
        self._remember(key, pointer)
        if pointer is None:
            return None
        info = self._pointer_info or {}
        chunks = int(info.get("chunks", "0") or 0)
        if chunks == 0:
            encoded = (pointer.get("binaryData") or {}).get(BLOB_KEY)
            if encoded is None:
                raise CheckpointError(f"configmap {checkpoint_name(key)} holds no checkpoint")
            blob = base64.b64decode(encoded)
        else:
            names = [chunk_name(key, info.get("slot", ""), i) for i in range(chunks)]
            parts = await asyncio.gather(*(self.api.find(CONFIGMAPS, self.namespace, n)
                                           for n in names))
            missing = [n for n, p in zip(names, parts, strict=True) if p is None]
            if missing:
                raise CheckpointError(f"checkpoint chunks missing: {', '.join(missing)}")
            self._existing.update(names)
            blob = b"".join(base64.b64decode((p or {}).get("binaryData", {}).get(BLOB_KEY, ""))
                            for p in parts)
        if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
            raise CheckpointError(f"configmap {checkpoint_name(key)}: checksum mismatch "
                                  "(torn or edited checkpoint)")
        return blob

    async def delete(self, key: str) -> None:
        found = await self.api.list(CONFIGMAPS, self.namespace,
                                    label_selector=f"{LABEL_CHECKPOINT}={key}")
        for obj in found:
            await self.api.delete(CONFIGMAPS, self.namespace, obj["metadata"]["name"])
        self._pointer_info = {}
        self._existing.clear()
