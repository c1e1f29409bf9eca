"""Per-trial bearer tokens for the status API.

A trainer may report for its own trial only. Rather than storing one secret
per trial, each search has one random key (kept in a Secret, or in the local
output folder) and a trial's token is HMAC-SHA256(key, "namespace/search/trial"):
the operator recomputes it on every request, and a token leaked from one pod
opens no other trial.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

KEY_BYTES = 32


def generate_key() -> bytes:
    """A fresh random per-search key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """Key as URL-safe base64 text (for a Secret's stringData or a file)."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str | bytes) -> bytes:
    """Inverse of ``encode_key``; a clear error if the text is not a key."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    try:
        key = base64.urlsafe_b64decode(raw.strip())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"search key is not URL-safe base64: {exc}") from None
    if len(key) < 16:
        raise ValueError(f"search key is too short ({len(key)} bytes); generate a new one")
    return key


def trial_identity(namespace: str, search: str, trial: str) -> str:
    return f"{namespace}/{search}/{trial}"


def trial_token(key: bytes, namespace: str, search: str, trial: str) -> str:
    """The bearer token of one trial (hex HMAC-SHA256 of its identity)."""
    message = trial_identity(namespace, search, trial).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_token(key: bytes, namespace: str, search: str, trial: str, token: str) -> bool:
    """Constant-time check of a presented token."""
    expected = trial_token(key, namespace, search, trial)
    return hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace"))
