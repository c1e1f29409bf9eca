"""Every member of a small custom space, found by brute force: what the custom-space tests
count sizes and probabilities against, independently of the space's own counting."""

from __future__ import annotations

import itertools

from controller_policy.spaces import InvalidArchitecture, SearchSpace


def valid_token_lists(space: SearchSpace) -> list[list[int]]:
    """Every token list the space accepts, trying every per-position combination."""
    out = []
    for tokens in itertools.product(*(range(slot.num_values) for slot in space.slots)):
        try:
            out.append(space.validate_tokens(list(tokens)))
        except InvalidArchitecture:
            pass
    return out
