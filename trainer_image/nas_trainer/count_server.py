"""``python -m nas_trainer.count_server``: the counting of ``nas_trainer.measure`` for a driver.

The operator package never imports the trainer's (docs/design.md §9), yet a search
with ``objective.constraints`` must count every proposal before launching it. The
driver keeps one of these processes and speaks JSON lines on its stdin/stdout:

- ``{"setup": {"space", "spaceOptions", "dataset", "model"}}`` -> ``{"key": K}``
- ``{"key": K, "tokens": [...]}`` -> ``{"params": P, "flops": F}``

and ``{"error": "..."}`` for anything that cannot be counted (the message names the
field). Counters are kept per setup, each with its cache per genotype.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from controller_policy.contract import DatasetSpec, ModelSpec
from nas_trainer.measure import Counter, CountError


def answer(counters: dict[int, Counter], request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer."""
    if "setup" in request:
        s = request["setup"]
        counter = Counter(s["space"], s.get("spaceOptions") or {},
                          DatasetSpec.model_validate(s.get("dataset") or {}),
                          ModelSpec.model_validate(s.get("model") or {}))
        key = len(counters)
        counters[key] = counter
        return {"key": key}
    counter = counters.get(request.get("key", -1))
    if counter is None:
        return {"error": "count before setup"}
    figures = counter.count([int(t) for t in request["tokens"]])
    return {"params": figures.params, "flops": figures.macs}


def serve(stdin: TextIO, stdout: TextIO) -> None:
    counters: dict[int, Counter] = {}
    for line in stdin:
        if not line.strip():
            continue
        try:
            reply = answer(counters, json.loads(line))
        except (CountError, ValueError, KeyError, TypeError) as exc:
            reply = {"error": str(exc)[:2000]}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
