"""Checkpoint and restore: a new loop continues exactly (counts, rewards told once, running
attempts adopted rather than relaunched), torn or foreign checkpoints are refused, and
every launch is preceded by a checkpoint that knows about it."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from controller_policy.contract import Report
from nas_operator.api import SpecError
from nas_operator.checkpoint import (
    CheckpointError,
    DirectoryCheckpointStore,
    LoopCheckpoint,
    MemoryCheckpointStore,
    decode_checkpoint,
    encode_checkpoint,
)
from nas_operator.loop.views import trial_view
from nas_operator.testing import SimulatedLauncher, SimulatedOutcome
from tests.support.loop_harness import Harness, make_search, wait_until


def gated(hang_from: int):
    """Trials below ``hang_from`` finish at once; the others hang (until adopted elsewhere)."""

    def behave(req):
        return SimulatedOutcome(hang=int(req.trial[-4:]) >= hang_from,
                                metrics=[{"val_accuracy": 0.3 + int(req.trial[-4:]) / 100}])

    return behave


def finishing(req):
    return SimulatedOutcome(metrics=[{"val_accuracy": 0.3 + int(req.trial[-4:]) / 100}])


async def test_restore_mid_search_adopts_running_and_continues_exactly():
    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 10, "parallelism": 3})
    first = Harness(search, gated(4), store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.succeeded == 4
                     and first.launcher.running == 3)
    await first.loop.stop()  # operator restart: the hung attempts keep running
    assert first.launcher.running == 3

    second_launcher = SimulatedLauncher(finishing)
    second_launcher.adoptable = {("s-t0004", 0), ("s-t0005", 0)}  # t0006's pod is gone
    second = Harness(search, store=store, launcher=second_launcher, key=first.loop.key)
    try:
        status = await second.run()
    finally:
        await first.close()
        await second.close()
    assert status.phase == "Succeeded"
    assert status.trials.total == 10 and status.trials.succeeded == 10
    relaunched = [(r.trial, r.attempt) for r in second_launcher.launched]
    assert ("s-t0004", 0) not in relaunched and ("s-t0005", 0) not in relaunched
    assert ("s-t0006", 1) in relaunched
    everything = [(r.trial, r.attempt) for r in first.launcher.launched] + relaunched
    assert len(everything) == len(set(everything))
    told = Counter(first.strategy.told) + Counter(second.strategy.told)
    assert sorted(told) == list(range(10)) and set(told.values()) == {1}
    assert status.trials.retried == 0
    assert second.reasons("TrialRequeued")[0].trial == "s-t0006"


async def test_restored_search_proposes_what_an_uninterrupted_one_would():
    search = make_search(budget={"maxTrials": 8, "parallelism": 2})
    straight = Harness(search, finishing)
    try:
        await straight.run()
    finally:
        await straight.close()
    expected = {r.trial: r.document.architecture.tokens for r in straight.launcher.launched}

    store = MemoryCheckpointStore()
    first = Harness(search, gated(3), store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.succeeded == 3
                     and first.launcher.running == 2)
    await first.loop.stop()
    await first.close()  # the hung attempts die with the node: both relaunched
    second = Harness(search, finishing, store=store, key=first.loop.key)
    try:
        status = await second.run()
    finally:
        await second.close()
    assert status.trials.succeeded == 8
    got = {r.trial: r.document.architecture.tokens
           for r in first.launcher.launched + second.launcher.launched}
    assert got == expected


async def test_a_result_accepted_just_before_a_crash_is_told_once_after_restore():
    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 3, "parallelism": 3})
    first = Harness(search, lambda req: SimulatedOutcome(hang=True), store=store)
    await first.loop.start()
    await wait_until(lambda: first.launcher.running == 3)
    result = first.loop.handle_report(
        "s-t0001", Report(kind="final", trial="s-t0001", epochs=[{"val_accuracy": 0.9}]))
    assert result.ok
    await first.loop.stop()  # before the worker could tell the strategy
    assert sum(first.strategy.told.values()) == 0

    launcher = SimulatedLauncher(finishing)
    launcher.adoptable = {("s-t0000", 0), ("s-t0002", 0)}
    second = Harness(search, store=store, launcher=launcher, key=first.loop.key)
    try:
        status = await second.run()
    finally:
        await first.close()
        await second.close()
    assert second.strategy.told == Counter({0: 1, 1: 1, 2: 1})
    assert second.strategy.rewards[1] == pytest.approx(0.9**3)
    assert status.best.trial == "s-t0001" and launcher.launched == []


async def test_repeated_final_report_after_restore_is_still_a_duplicate():
    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 2, "parallelism": 2})
    first = Harness(search, lambda req: SimulatedOutcome(hang=True), store=store)
    await first.loop.start()
    await wait_until(lambda: first.launcher.running == 2)
    report = Report(kind="final", trial="s-t0000", epochs=[{"val_accuracy": 0.5}])
    assert first.loop.handle_report("s-t0000", report).outcome == "accepted"
    await wait_until(lambda: sum(first.strategy.told.values()) == 1)
    await first.loop.stop()
    launcher = SimulatedLauncher(lambda req: SimulatedOutcome(hang=True))
    launcher.adoptable = {("s-t0001", 0)}
    second = Harness(search, store=store, launcher=launcher, key=first.loop.key)
    await second.loop.start()
    try:
        assert second.loop.handle_report("s-t0000", report).outcome == "duplicate"
        other = Report(kind="final", trial="s-t0000", epochs=[{"val_accuracy": 0.6}])
        assert second.loop.handle_report("s-t0000", other).outcome == "conflict"
    finally:
        await first.close()
        await second.close()


async def test_finished_search_restores_as_finished():
    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 2, "parallelism": 2})
    first = Harness(search, finishing, store=store)
    try:
        done = await first.run()
    finally:
        await first.close()
    second = Harness(search, finishing, store=store)
    try:
        await second.loop.start()
        status = await asyncio.wait_for(asyncio.shield(second.loop.done), 5)
    finally:
        await second.close()
    assert status.phase == "Succeeded" and status.trials == done.trials
    assert second.launcher.launched == []


async def test_checkpoint_of_another_search_is_refused():
    store = MemoryCheckpointStore()
    first = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}), finishing, store=store)
    try:
        await first.run()
    finally:
        await first.close()
    other = make_search(searchSpace={"type": "enas-macro", "options": {"layers": 5}},
                        budget={"maxTrials": 1, "parallelism": 1})
    second = Harness(other, finishing, store=store)
    with pytest.raises(SpecError, match="different searchSpace"):
        await second.loop.start()
    await second.close()


async def test_every_launch_is_preceded_by_a_checkpoint_that_knows_it():
    store = MemoryCheckpointStore()
    seen: list[bool] = []

    class Checking(SimulatedLauncher):
        async def launch(self, request):
            state = decode_checkpoint(store.blobs["ns.s"]).state["ledger"]
            trials = {body["name"]: body for tag, body in state["trials"]["search"] if tag == 0}
            body = trials.get(request.trial)
            seen.append(body is not None and body["launched"] and body["attempt"] == request.attempt)
            await super().launch(request)

    h = Harness(make_search(budget={"maxTrials": 6, "parallelism": 2}), store=store,
                launcher=Checking(finishing))
    try:
        await h.run()
    finally:
        await h.close()
    assert len(seen) == 6 and all(seen)


def test_checkpoint_blob_detects_damage():
    blob = encode_checkpoint(LoopCheckpoint(state={"a": 1}, strategy=b"\x00weights"))
    assert decode_checkpoint(blob).state == {"a": 1}
    with pytest.raises(CheckpointError, match="checksum"):
        decode_checkpoint(blob[:-40] + b"X" + blob[-39:])
    with pytest.raises(CheckpointError, match="truncated|checksum"):
        decode_checkpoint(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="magic"):
        decode_checkpoint(b"PK\x03\x04" + blob)


async def test_directory_store_is_atomic(tmp_path, monkeypatch):
    store = DirectoryCheckpointStore(tmp_path / "ckpt")
    ref = await store.save("ns.s", b"first")
    assert await store.load("ns.s") == b"first" and ref.endswith("ns.s.ckpt")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        await store.save("ns.s", b"second")
    monkeypatch.undo()
    assert await store.load("ns.s") == b"first"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["ns.s.ckpt"]
    assert await store.load("missing") is None
    with pytest.raises(ValueError, match="plain file name"):
        await store.save("../escape", b"x")
    await store.delete("ns.s")
    assert await store.load("ns.s") is None


async def test_torn_checkpoint_stops_the_start_with_a_clear_error(tmp_path):
    store = DirectoryCheckpointStore(tmp_path)
    search = make_search(budget={"maxTrials": 1, "parallelism": 1})
    first = Harness(search, finishing, store=store)
    try:
        await first.run()
    finally:
        await first.close()
    path = tmp_path / "ns.s.ckpt"
    path.write_bytes(path.read_bytes()[:-10])
    second = Harness(search, finishing, store=store)
    with pytest.raises(CheckpointError, match="ns.s"):
        await second.loop.start()
    await second.close()


async def test_checkpoint_blocks_of_finished_trials_are_reused_and_restore_equal(monkeypatch):
    import nas_operator.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "BLOCK", 4)
    store = MemoryCheckpointStore()
    h = Harness(make_search(budget={"maxTrials": 11, "parallelism": 2}), finishing, store=store)
    try:
        await h.run()
    finally:
        await h.close()
    ledger = h.loop.ledger
    assert set(ledger._blocks) == {("search", 0), ("search", 1)}  # two full, compacted blocks
    restored = ledger_module.Ledger.from_state(ledger.to_state())
    assert restored.to_state() == ledger.to_state()
    state = decode_checkpoint(store.blobs["ns.s"]).state["ledger"]
    assert [tag for tag, _ in state["trials"]["search"]] == [1] * 11
    assert state["counts"]["search"]["succeeded"] == 11


def device_of(trial: str) -> str:
    return "cuda:0 (NVIDIA H200)" if int(trial[-4:]) % 2 else "cpu"


async def test_the_device_a_trial_reports_is_kept_in_status_and_across_a_restart():
    """The final report's device (where latency_ms was timed) stays with the trial's metrics:
    in best and topK, in the NASTrial status, in the checkpoint."""

    def behave(req):
        outcome = gated(3)(req)
        outcome.device = device_of(req.trial)
        return outcome

    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 6, "parallelism": 2})
    first = Harness(search, behave, store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.succeeded == 3)
    before = first.loop.status()
    await first.loop.stop()
    assert {r.trial: r.device for r in before.topK} == {
        f"s-t000{i}": device_of(f"s-t000{i}") for i in range(3)}
    assert before.best is not None and before.best.device == device_of(before.best.trial)

    def rest(req):
        return SimulatedOutcome(metrics=[{"val_accuracy": 0.2}], device="cpu")

    second = Harness(search, store=store, launcher=SimulatedLauncher(rest), key=first.loop.key)
    seen: dict[str, str | None] = {}

    def on_success(event) -> None:  # the NASTrial status, as the operator writes it
        if event.reason == "TrialSucceeded":
            view = trial_view(second.loop, event.trial)
            assert view is not None
            seen[event.trial] = view[1].device

    second.loop.subscribe(on_success)
    try:
        status = await second.run()
    finally:
        await first.close()
        await second.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 6
    devices = {r.trial: r.device for r in status.topK}
    for i in range(3):  # restored from the checkpoint
        assert devices[f"s-t000{i}"] == device_of(f"s-t000{i}")
    assert seen == {f"s-t000{i}": "cpu" for i in range(3, 6)}
    assert [devices[f"s-t000{i}"] for i in range(3, 6)] == ["cpu"] * 3
