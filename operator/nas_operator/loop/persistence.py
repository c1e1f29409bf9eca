"""Write-ahead checkpoints of one search, made cheap.

A checkpoint pairs the loop's state (``LoopState``), the ledger and the proposal
source's bytes of the same moment, and one is written before any launch, so a
restarted loop never meets a Job it does not know (``nas_operator.checkpoint``
holds the blob format and the stores). What makes it cheap at a thousand trials
in flight: the ledger keeps each entry's JSON text until the entry changes
(``Ledger.snapshot``), and the source's bytes are encoded again only when its
``version`` moved; what is left per checkpoint is joining texts and a checksum.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_operator.api import SpecError
from nas_operator.checkpoint import (
    CheckpointError,
    CheckpointStore,
    decode_checkpoint,
    encode_checkpoint_text,
)
from nas_operator.ledger import Ledger
from nas_operator.loop.proposals import ProposalSource
from nas_operator.loop.state import LoopState


@dataclass
class Restored:
    """What a checkpoint gives back."""

    state: LoopState
    ledger: Ledger
    data: dict[str, Any] = field(default_factory=dict)
    """The checkpoint's whole state document (parts kept by other modules: earlyStopping)."""


class Persistence:
    """Saves and loads one search's checkpoint under ``key`` in ``store``."""

    def __init__(self, store: CheckpointStore, key: str) -> None:
        self.store = store
        self.key = key
        self._learner: tuple[int, bytes] | None = None
        """The source's bytes and the version they were encoded at."""
        self.saved_compactions = 0
        """``Ledger.compactions`` of the latest checkpoint saved (or loaded): every trial
        compacted when the ledger's count was at most this is in the stored checkpoint."""
        self.on_saved: list[Callable[[], None]] = []
        """Called after each checkpoint saved (retention waits for the one covering its trials)."""

    async def save(self, state: dict[str, Any], ledger: Ledger, source: ProposalSource,
                   texts: Mapping[str, str] | None = None) -> tuple[str, int]:
        """Write one checkpoint; returns (reference, size in bytes). ``texts``: more parts of
        the state document, already JSON (kept encoded by their owners between checkpoints)."""
        extra = "".join(f",{json.dumps(k)}:{v}" for k, v in (texts or {}).items())
        snapshot = ledger.snapshot()
        version = source.version
        cached = self._learner[1] if self._learner and self._learner[0] == version else None

        def encode() -> tuple[bytes, bytes]:
            learner = cached if cached is not None else source.to_bytes()
            text = json.dumps(state, separators=(",", ":"))
            return learner, encode_checkpoint_text(
                f'{text[:-1]}{extra},"ledger":{snapshot.to_json()}}}', learner)

        # The source's bytes take a while for a large strategy: off the event loop then.
        learner, blob = encode() if cached is not None else await asyncio.to_thread(encode)
        self._learner = (version, learner)
        ref = await self.store.save(self.key, blob)
        self.saved_compactions = max(self.saved_compactions, snapshot.compactions)
        for callback in list(self.on_saved):
            callback()
        return ref, len(blob)

    def remember(self, source: ProposalSource) -> None:
        """Encode the source's bytes now (its worker thread is running anyway), so that the
        checkpoint that follows only joins texts."""
        self._learner = (source.version, source.to_bytes())

    async def load(self, fingerprint: str, source: ProposalSource) -> Restored | None:
        """The checkpoint of this search (None if there is none); loads ``source`` too."""
        blob = await self.store.load(self.key)
        if blob is None:
            return None
        try:
            ckpt = decode_checkpoint(blob)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {self.key}: {exc}") from None
        data = ckpt.state
        if data.get("fingerprint") != fingerprint:
            raise SpecError([
                "spec: the checkpoint was written for a different searchSpace, strategy, "
                f"objective or earlyStopping (key {self.key}); restore the old spec or start a new search"
            ])
        if ckpt.strategy:
            await asyncio.to_thread(source.load_bytes, ckpt.strategy)
        ledger = Ledger.from_state(data["ledger"])
        self.saved_compactions = ledger.compactions  # what was read back is stored
        return Restored(LoopState.from_json(data), ledger, data)

    async def delete(self) -> None:
        await self.store.delete(self.key)
