"""Controller checkpoints in ConfigMap ``binaryData``, owned by the NASSearch.

One ConfigMap, ``<search>-checkpoint``, is the pointer: it names the current
generation, its size, chunk count and SHA-256. A checkpoint up to
``CHUNK_BYTES`` lives inline in the pointer, so the common save is a single
atomic object write. A larger one is split over chunk ConfigMaps
``<search>-checkpoint-g<generation>-<i>`` written first; only when all of
them exist is the pointer flipped to the new generation (one write), and the
previous generation's chunks are deleted afterwards. A crash at any moment
leaves either the old or the new checkpoint whole, never a mix; leftover chunks
of an unfinished or superseded generation are swept by the next save.
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
        self._generation: int | None = None
        self._chunked = True
        """Whether chunk ConfigMaps may exist (unknown at start: sweep once)."""

    # -- helpers ------------------------------------------------------------------------
    def _meta(self, key: str, name: str, generation: int) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**common_labels(key, "checkpoint"), LABEL_CHECKPOINT: key},
            "annotations": {"kubenas.dev/generation": str(generation)},
            "ownerReferences": [owner_reference(self.owner)],
        }

    def _chunk_name(self, key: str, generation: int, index: int) -> str:
        return f"{checkpoint_name(key)}-g{generation}-{index}"

    async def _pointer(self, key: str) -> dict[str, Any] | None:
        return await self.api.find(CONFIGMAPS, self.namespace, checkpoint_name(key))

    async def _put(self, body: dict[str, Any]) -> None:
        """Create or overwrite a ConfigMap's data (a ``None`` value removes that key)."""
        name = body["metadata"]["name"]
        created = {**body, "binaryData": {k: v for k, v in body["binaryData"].items()
                                          if v is not None}}
        try:
            await self.api.create(CONFIGMAPS, self.namespace, created)
        except ApiError as exc:
            if not exc.conflict:
                raise
            await self.api.patch(CONFIGMAPS, self.namespace, name,
                                 {"metadata": {"annotations": body["metadata"]["annotations"]},
                                  "data": body.get("data"), "binaryData": body["binaryData"]})

    # -- CheckpointStore ----------------------------------------------------------------
    async def save(self, key: str, blob: bytes) -> str:
        name = checkpoint_name(key)
        ref = f"configmap/{name}"
        if self.closed:
            return ref
        if self._generation is None:
            pointer = await self._pointer(key)
            self._generation = _generation_of(pointer)
        generation = self._generation + 1
        digest = hashlib.sha256(blob).hexdigest()
        info = {"generation": str(generation), "bytes": str(len(blob)), "sha256": digest}
        if len(blob) <= self.chunk_bytes:
            info["chunks"] = "0"
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": self._meta(key, name, generation),
                    "data": info, "binaryData": {BLOB_KEY: _b64(blob)}}
            await self._put(body)
        else:
            pieces = [blob[i:i + self.chunk_bytes] for i in range(0, len(blob), self.chunk_bytes)]
            await asyncio.gather(*(
                self._put({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": self._meta(key, self._chunk_name(key, generation, i),
                                                  generation),
                           "binaryData": {BLOB_KEY: _b64(piece)}})
                for i, piece in enumerate(pieces)))
            info["chunks"] = str(len(pieces))
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": self._meta(key, name, generation),
                    "data": info, "binaryData": {BLOB_KEY: None}}
            await self._put(body)  # the flip: from here on the new generation is the checkpoint
        self._generation = generation
        chunked = len(blob) > self.chunk_bytes
        if chunked or self._chunked:
            await self._sweep(key, keep=generation if chunked else None)
        self._chunked = chunked
        return ref

    async def _sweep(self, key: str, keep: int | None) -> None:
        """Delete chunk ConfigMaps of every generation but ``keep`` (best effort)."""
        pointer = checkpoint_name(key)
        try:
            found = await self.api.list(CONFIGMAPS, self.namespace,
                                        label_selector=f"{LABEL_CHECKPOINT}={key}")
        except ApiError:
            return
        stale = [o["metadata"]["name"] for o in found if o["metadata"]["name"] != pointer
                 and o["metadata"].get("annotations", {}).get("kubenas.dev/generation")
                 != (str(keep) if keep is not None else None)]
        for name in stale:
            try:
                await self.api.delete(CONFIGMAPS, self.namespace, name)
            except ApiError:
                pass

    async def load(self, key: str) -> bytes | None:
        pointer = await self._pointer(key)
        if pointer is None:
            self._generation = 0
            return None
        self._generation = _generation_of(pointer)
        info = pointer.get("data") or {}
        chunks = int(info.get("chunks", "0"))
        self._chunked = True  # sweep leftovers of an interrupted save on the next one
        if chunks == 0:
            encoded = (pointer.get("binaryData") or {}).get(BLOB_KEY)
            if encoded is None:
                raise CheckpointError(f"configmap {checkpoint_name(key)} holds no checkpoint")
            blob = base64.b64decode(encoded)
        else:
            names = [self._chunk_name(key, self._generation, i) for i in range(chunks)]
            parts = await asyncio.gather(*(self.api.find(CONFIGMAPS, self.namespace, n)
                                           for n in names))
            missing = [n for n, p in zip(names, parts, strict=True) if p is None]
            if missing:
                raise CheckpointError(f"checkpoint chunks missing: {', '.join(missing)}")
            blob = b"".join(base64.b64decode((p or {}).get("binaryData", {}).get(BLOB_KEY, ""))
                            for p in parts)
        if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
            raise CheckpointError(f"configmap {checkpoint_name(key)}: checksum mismatch")
        return blob

    async def delete(self, key: str) -> None:
        await self._sweep(key, keep=None)
        await self.api.delete(CONFIGMAPS, self.namespace, checkpoint_name(key))
        self._generation = 0


def _generation_of(pointer: dict[str, Any] | None) -> int:
    if pointer is None:
        return 0
    try:
        return int((pointer.get("data") or {}).get("generation", "0"))
    except ValueError:
        return 0
