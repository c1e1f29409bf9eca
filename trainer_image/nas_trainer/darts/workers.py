"""Mode ``darts``: where the workers of one search come from (docs/design.md §4, docs/papers.md §8).

- ``WORLD_SIZE`` set (an Indexed Job pod, or ``torchrun``): this process is the
  worker ``RANK`` of that world; the rendezvous is ``MASTER_ADDR:MASTER_PORT``.
- otherwise, with ``darts.workers: N > 1``: this process is rank 0 and starts
  ranks 1 .. N-1 as ``python -m nas_trainer`` processes on this machine (gloo on
  loopback), each with ``WORLD_SIZE``/``RANK`` set, exactly what a cluster pod
  sees. They report nothing (``secondary_rank``); a worker that dies fails the
  attempt, and a rerun resumes from rank 0's checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

from controller_policy.contract import (
    ENV_REPORT_URL,
    ENV_TERMINATION_FILE,
    ENV_TRIAL_FILE,
    ENV_TRIAL_JSON,
)
from nas_trainer.darts.collective import (
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
    ENV_RANK,
    ENV_WORLD_SIZE,
    Collective,
)
from nas_trainer.darts.search import DartsSearch
from nas_trainer.epochs import TrainingFailed, TrainResult, TrialContext
from nas_trainer.runtime import ConfigError

log = logging.getLogger("nas_trainer")

WORKER_EXIT_SECONDS = 60.0


def secondary_rank() -> bool:
    """This process is a worker other than rank 0 (it must not report)."""
    return os.environ.get(ENV_RANK, "0") not in ("", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when rank 0 goes, so no orphan waits on a dead peer."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def gpu_of(rank: int, device_type: str) -> dict[str, str]:
    """One pod with several GPUs: worker ``rank`` sees only the rank-th visible GPU (rank 0: the first)."""
    if device_type != "cuda":
        return {}
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if rank >= len(ids):
        raise ConfigError(f"darts.workers / enas.workers: worker {rank} has no GPU of its own ({len(ids)} visible)")
    return {"CUDA_VISIBLE_DEVICES": ids[rank]}


def start_local_workers(ctx: TrialContext, world: int) -> list[subprocess.Popen[bytes]]:
    """Ranks 1 .. world-1 as trainer processes; this process becomes rank 0 of a loopback world."""
    port = _free_port()
    os.environ.update({
        ENV_WORLD_SIZE: str(world), ENV_RANK: "0",
        ENV_MASTER_ADDR: "127.0.0.1", ENV_MASTER_PORT: str(port),
    })
    base = {k: v for k, v in os.environ.items() if k not in (ENV_REPORT_URL, ENV_TRIAL_FILE)}
    base[ENV_TRIAL_JSON] = ctx.doc.model_dump_json()
    base[ENV_TERMINATION_FILE] = os.devnull
    procs = []
    for rank in range(1, world):
        env = {**base, ENV_RANK: str(rank), **gpu_of(rank, ctx.runtime.device.type)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "nas_trainer"], env=env,
            stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent,  # noqa: PLW1509
        ))
    log.info("started %d local workers on 127.0.0.1:%d (gloo)", world - 1, port)
    return procs


def _reap(procs: list[subprocess.Popen[bytes]], failed: bool) -> list[tuple[int, int]]:
    """Wait for the local workers (killing stragglers); (rank, exit code) of those that failed."""
    bad = []
    for rank, proc in enumerate(procs, start=1):
        try:
            code = proc.wait(timeout=5.0 if failed else WORKER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code not in (0, 143):
            bad.append((rank, code))
    return bad


def run_on_workers(
    ctx: TrialContext, workers: int, name: str, search: Callable[[TrialContext, Collective], TrainResult],
) -> TrainResult:
    """Run ``search`` as one worker of the world the environment or ``workers`` describes."""
    procs: list[subprocess.Popen[bytes]] = []
    if ENV_WORLD_SIZE not in os.environ and workers > 1:
        procs = start_local_workers(ctx, workers)
    try:
        collective = Collective.join(ctx.runtime.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    failed = True
    try:
        result = search(ctx, collective)
        failed = False
        return result
    except RuntimeError as exc:
        if collective.world == 1:
            raise
        raise TrainingFailed(f"a {name} worker was lost: {exc}") from exc
    finally:
        lost = _reap(procs, failed)
        collective.close()
        if lost and not failed:
            detail = ", ".join(f"rank {r} exited with {c}" for r, c in lost)
            raise TrainingFailed(f"{name} workers failed: {detail}")


def run_darts(ctx: TrialContext) -> TrainResult:
    """Run the DARTS search of ``ctx.doc`` on one or more workers; rank 0 returns the result."""
    workers = ctx.doc.darts.workers if ctx.doc.darts else 1
    return run_on_workers(ctx, workers, "DARTS", lambda c, coll: DartsSearch(c, coll).run())
