"""Strategy states as bytes, fast: plain containers pickled, tensors written by ``torch``.

Why: a search checkpoints its strategy before every launch (write-ahead), and
``torch.save`` of a state with a thousand pending proposals (lists of ints) costs
tens of milliseconds, most of it per-object bookkeeping. Here the tensors are
lifted out and saved by ``torch.save`` (few objects, fast), and the rest, which
must be plain Python data (dict, list, tuple, str, numbers, bool, None, bytes),
is pickled and read back by an unpickler that refuses every global but
``collections.OrderedDict``: a checkpoint ConfigMap anyone with edit rights can
change still never unpickles arbitrary objects. A state with anything else falls
back to ``torch.save`` as a whole (read with ``weights_only=True``).
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from typing import Any

import torch

MAGIC = b"KUBENAS-STATE\x01"
_LENGTHS = struct.Struct(">QQ")
_TENSOR = "__kubenas_tensor__"
_SCALARS = frozenset({int, float, str, bool, bytes, type(None)})


class StateCodecError(ValueError):
    """Bytes that are not a readable strategy state."""


class _NotPlain(Exception):
    """The state holds an object this codec does not write (use ``torch.save``)."""


def _lift(obj: Any, tensors: list[torch.Tensor]) -> Any:
    """``obj`` with each tensor replaced by ``(_TENSOR, index)``; raises ``_NotPlain``."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return (_TENSOR, len(tensors) - 1)
    if kind is list or kind is tuple:
        if _SCALARS.issuperset(map(type, obj)):
            return obj
        lifted = [_lift(v, tensors) for v in obj]
        return lifted if kind is list else tuple(lifted)
    if kind is dict or kind is OrderedDict:
        out = kind()
        for key, value in obj.items():
            if type(key) not in _SCALARS:
                raise _NotPlain(key)
            out[key] = _lift(value, tensors)
        return out
    raise _NotPlain(obj)


def _lower(obj: Any, tensors: list[torch.Tensor]) -> Any:
    kind = type(obj)
    if kind is tuple and len(obj) == 2 and obj[0] == _TENSOR and type(obj[1]) is int:
        return tensors[obj[1]]
    if kind is list or kind is tuple:
        if _SCALARS.issuperset(map(type, obj)):
            return obj
        lowered = [_lower(v, tensors) for v in obj]
        return lowered if kind is list else tuple(lowered)
    if kind is dict or kind is OrderedDict:
        return kind((k, _lower(v, tensors)) for k, v in obj.items())
    return obj


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a strategy state")


def encode_state(state: dict[str, Any]) -> bytes:
    """``state`` as bytes (see the module docstring)."""
    tensors: list[torch.Tensor] = []
    try:
        plain = _lift(state, tensors)
    except _NotPlain:
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()
    body = pickle.dumps(plain, protocol=5)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    blob = buf.getvalue()
    return MAGIC + _LENGTHS.pack(len(body), len(blob)) + body + blob


def decode_state(data: bytes) -> Any:
    """The state ``encode_state`` wrote (or a whole-state ``torch.save``)."""
    try:
        if not data.startswith(MAGIC):
            return torch.load(io.BytesIO(data), weights_only=True)
        start = len(MAGIC) + _LENGTHS.size
        body_len, blob_len = _LENGTHS.unpack_from(data, len(MAGIC))
        if start + body_len + blob_len != len(data):
            raise StateCodecError("lengths do not add up (truncated?)")
        plain = _PlainUnpickler(io.BytesIO(data[start : start + body_len])).load()
        tensors = torch.load(io.BytesIO(data[start + body_len :]), weights_only=True)
        return _lower(plain, list(tensors))
    except StateCodecError:
        raise
    except Exception as exc:  # torch and pickle raise several types for a bad blob
        raise StateCodecError(str(exc) or type(exc).__name__) from exc
