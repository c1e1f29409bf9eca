"""The per-search Secret: the HMAC key behind trial tokens, and each live trial's token.

Trial pods read their token with ``secretKeyRef`` (key = trial name), so no
token is ever written into a pod spec, and the key survives operator restarts
(a restarted operator recomputes the same tokens). Tokens are added before a
trial's Job is created and removed when the trial ends; concurrent changes are
coalesced into one merge patch, so launching a batch of trials costs one write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from nas_operator.kube.api import SECRETS, ApiError, KubeApi
from nas_operator.kube.labels import common_labels, owner_reference, token_secret_name
from nas_operator.tokens import decode_key, encode_key, generate_key

REMOVE_DELAY = 1.0
"""Seconds a finished trial's token may wait to be removed together with other changes."""
KEY_ENTRY = "search-key"
"""Data key of the HMAC key (trial names cannot clash: they end in -tNNNN / -fNNNN)."""


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


class TokenSecret:
    """One search's token Secret; create it with ``ensure`` before any launch."""

    def __init__(self, api: KubeApi, namespace: str, search: str) -> None:
        self.api = api
        self.namespace = namespace
        self.search = search
        self.name = token_secret_name(search)
        self.key: bytes | None = None
        self._owner: dict[str, Any] | None = None
        self._pending: dict[str, str | None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def ensure(self, owner: dict[str, Any]) -> bytes:
        """The search's key: read from its Secret, or generated and stored (owned by the search)."""
        self._owner = owner
        for _ in range(3):
            found = await self.api.find(SECRETS, self.namespace, self.name)
            if found is not None:
                encoded = (found.get("data") or {}).get(KEY_ENTRY)
                if not encoded:
                    raise ValueError(f"secret {self.name} has no {KEY_ENTRY!r} entry; delete it "
                                     "to let the operator create a new one")
                self.key = decode_key(base64.b64decode(encoded))
                return self.key
            key = generate_key()
            try:
                await self.api.create(SECRETS, self.namespace, self._body(key, {}))
            except ApiError as exc:
                if exc.conflict:
                    continue  # created meanwhile: read it
                raise
            self.key = key
            return key
        raise RuntimeError(f"secret {self.name}: could not read or create it")

    def _body(self, key: bytes, data: dict[str, str]) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": common_labels(self.search, "tokens")}
        if self._owner is not None:
            meta["ownerReferences"] = [owner_reference(self._owner)]
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
                "data": {KEY_ENTRY: _b64(encode_key(key)), **data}}

    async def add(self, trial: str, token: str) -> None:
        """Store ``trial``'s token; returns once the Secret holds it."""
        self._pending[trial] = _b64(token)
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._kick()
        await future

    def remove(self, trial: str) -> None:
        """Forget a finished trial's token: with the next launch's write, or within a second."""
        self._pending[trial] = None
        if self._timer is None and (self._task is None or self._task.done()):
            self._timer = asyncio.get_running_loop().call_later(REMOVE_DELAY, self._kick)

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush(),
                                                                name=f"tokens-{self.search}")

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let the other launches of this batch join the write
            batch, waiters = self._pending, self._waiters
            self._pending, self._waiters = {}, []
            try:
                await self._write(batch)
            except Exception as exc:  # the launches waiting on it fail (and are retried)
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _write(self, batch: dict[str, str | None]) -> None:
        try:
            await self.api.patch(SECRETS, self.namespace, self.name, {"data": batch})
        except ApiError as exc:
            if not exc.not_found or self.key is None:
                raise
            # Deleted behind our back: recreate it with the same key (pods keep working).
            live = {k: v for k, v in batch.items() if v is not None}
            await self.api.create(SECRETS, self.namespace, self._body(self.key, live))

    def abandon(self) -> None:
        """The search is being deleted: drop pending changes (the Secret goes with it)."""
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        """Finish pending writes (best effort) before the search's loop goes away."""
        if self._pending:
            self._kick()
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
