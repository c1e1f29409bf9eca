"""Determinism and exact checkpoints for every strategy.

A search is driven by a seeded "cluster": proposals are asked one at a time or a
few at once, rewards come back in random order while others stay in flight,
and some trials fail. Checkpointing mid-search (pending proposals, rewards not
yet applied) and continuing from the checkpoint - in this process or a fresh
one - must give the same next proposals, the same updates and the same final
state as never stopping.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from controller_policy.spaces import make_space
from controller_policy.strategies import StrategyError, make_strategy
from tests.support import REPO
from tests.support.strategies_state import CASES, assert_same_state, build, drive


@pytest.mark.parametrize("kind", list(CASES))
def test_same_seed_same_search_and_other_seed_another(kind: str) -> None:
    logs = [drive(build(kind, seed), random.Random(5), [], 24) for seed in (11, 11, 12)]
    assert logs[0] == logs[1]
    first = [r["tokens"] for r in logs[0] if "tokens" in r]
    other = [r["tokens"] for r in logs[2] if "tokens" in r]
    assert first != other


@pytest.mark.parametrize("kind", list(CASES))
def test_checkpoint_mid_search_continues_bit_for_bit(kind: str) -> None:
    strategy = build(kind)
    env, in_flight = random.Random(3), []
    drive(strategy, env, in_flight, 30)
    assert strategy.pending, "the checkpoint must be taken with proposals in flight"
    if kind in ("reinforce", "ppo"):
        assert strategy.buffer, "and with rewards received but not yet applied"
    blob = strategy.to_bytes()
    snapshot = strategy.state_dict()
    env_state, flight = env.getstate(), tuple(in_flight)

    expected = drive(strategy, env, in_flight, 50)
    assert strategy.summary()["asked"] == 80

    restored = build(kind)
    restored.load_bytes(blob)
    env2 = random.Random()
    env2.setstate(env_state)
    assert drive(restored, env2, list(flight), 50) == expected
    assert_same_state(strategy.state_dict(), restored.state_dict())

    # A state_dict is a snapshot: continuing the search did not change it.
    again = build(kind)
    again.load_state_dict(snapshot)
    env3 = random.Random()
    env3.setstate(env_state)
    assert drive(again, env3, list(flight), 50) == expected


CHILD = r"""
import json, random, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from tests.support.strategies_state import build, drive
job = json.loads(open(sys.argv[1]).read())
out = {}
for kind, item in job.items():
    s = build(kind)
    s.load_bytes(bytes.fromhex(item["blob"]))
    env = random.Random()
    v, internal, g = item["env"]
    env.setstate((v, tuple(internal), g))
    out[kind] = {"log": drive(s, env, item["in_flight"], 20), "blob": s.to_bytes().hex()}
print(json.dumps(out))
"""


def test_checkpoint_survives_a_process_restart(tmp_path: Path) -> None:
    job: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    finals: dict[str, Any] = {}
    for kind in CASES:
        strategy = build(kind)
        env, in_flight = random.Random(8), []
        drive(strategy, env, in_flight, 20)
        job[kind] = {"blob": strategy.to_bytes().hex(), "env": env.getstate(), "in_flight": list(in_flight)}
        expected[kind] = json.loads(json.dumps(drive(strategy, env, in_flight, 20)))
        finals[kind] = strategy
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "job.json"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    for kind in CASES:
        assert got[kind]["log"] == expected[kind], kind
        child = build(kind)
        child.load_bytes(bytes.fromhex(got[kind]["blob"]))
        assert_same_state(finals[kind].state_dict(), child.state_dict(), kind)


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_tells_are_refused_without_any_state_change(kind: str) -> None:
    strategy = build(kind)
    drive(strategy, random.Random(1), [], 12)
    pid = strategy.pending[0]
    told = strategy.ask().id
    strategy.tell(told, 0.5)
    before = strategy.state_dict()
    bad_calls = [
        (lambda: strategy.tell(pid, float("nan")), "finite"),
        (lambda: strategy.tell(pid, float("inf")), "finite"),
        (lambda: strategy.tell(pid, -float("inf")), "finite"),
        (lambda: strategy.tell(pid, "0.5"), "finite number"),
        (lambda: strategy.tell(pid, None), "finite number"),
        (lambda: strategy.tell(pid, True), "finite number"),
        (lambda: strategy.tell(10_000, 0.5), "unknown"),
        (lambda: strategy.tell(-1, 0.5), "unknown"),
        (lambda: strategy.tell(str(pid), 0.5), "integer"),
        (lambda: strategy.tell(told, 0.5), "already told"),
        (lambda: strategy.tell_failure(told), "already told"),
        (lambda: strategy.tell_failure(10_000), "unknown"),
        (lambda: strategy.ask_batch(-2), "count"),
    ]
    for call, message in bad_calls:
        with pytest.raises(StrategyError, match=message):
            call()
        assert_same_state(before, strategy.state_dict())
    strategy.tell(pid, 0.25)  # the refused proposal can still be told properly
    assert pid not in strategy.pending


@pytest.mark.parametrize("kind", list(CASES))
def test_foreign_or_corrupt_checkpoints_are_refused_without_any_state_change(kind: str) -> None:
    strategy = build(kind)
    drive(strategy, random.Random(2), [], 10)
    before = strategy.state_dict()
    other_kind = next(k for k in CASES if k != kind)
    space_type, settings = CASES[kind]
    other_space = "enas-rnn"
    other_settings = {**settings, "seed": 99}
    cases = [
        (build(other_kind).to_bytes(), "belongs to strategy"),
        (make_strategy(kind, make_space(other_space), settings).to_bytes(), "another search space"),
        (make_strategy(kind, make_space(space_type), other_settings).to_bytes(), "seed"),
        (b"not a checkpoint", "not a readable"),
        (strategy.to_bytes()[:-40], "not a readable"),
    ]
    for blob, message in cases:
        with pytest.raises(StrategyError, match=message):
            strategy.load_bytes(blob)
        assert_same_state(before, strategy.state_dict())
    state = strategy.state_dict()
    del state["ledger"]
    with pytest.raises(StrategyError, match="incomplete or corrupt"):
        strategy.load_state_dict(state)
    assert_same_state(before, strategy.state_dict())


class Payload:
    """Stands for an arbitrary object someone smuggled into a checkpoint ConfigMap."""


def test_checkpoints_never_unpickle_arbitrary_objects() -> None:
    import io

    strategy = build("random")
    state = strategy.state_dict()
    state["extra"] = Payload()
    buf = io.BytesIO()
    torch.save(state, buf)
    with pytest.raises(StrategyError, match="not a readable"):
        strategy.load_bytes(buf.getvalue())
