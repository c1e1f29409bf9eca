"""Controller cost per search space on this CPU: ask, update, checkpoint size.

Each space uses its papers' controller defaults (``strategies.defaults``). The
ask figure is one ``ask()`` (one sampled architecture, no gradient); the batched
figure is ``ask_batch(8)`` divided by 8. Update figures time the ``tell`` that
completes a batch of m rewards (REINFORCE: one Adam step; PPO: its 3 epochs).
The state is ``to_bytes()`` of PPO (weights + Adam moments, so about 3 x 4
bytes per parameter) after 3 updates with 10 proposals in flight: it must fit
a ConfigMap (1 MiB of data) or the operator stores it in chunks. Every pending
proposal adds its tokens and extras, so "spare" is the room left for them.
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from bench.table import bench_main, format_table
from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy

SPACES = ["zoph-le-cnn", "zoph-le-rnn", "nasnet", "enas-macro", "enas-micro", "enas-rnn"]
CONFIGMAP_BYTES = 1024 * 1024


def ask_ms(space_type: str, repeats: int) -> tuple[float, float]:
    """(one ask, per-proposal cost of ask_batch(8)) in milliseconds, medians."""
    s = make_strategy("reinforce", make_space(space_type))
    s.ask()  # warm-up
    singles, batched = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        s.ask()
        singles.append(time.perf_counter() - t)
        t = time.perf_counter()
        s.ask_batch(8)
        batched.append((time.perf_counter() - t) / 8)
    return statistics.median(singles) * 1e3, statistics.median(batched) * 1e3


def update_ms(kind: str, space_type: str, m: int, repeats: int) -> float:
    """Median time of the tell that triggers an update of ``m`` rewards."""
    s = make_strategy(kind, make_space(space_type), {"batchSize": m})
    rng = random.Random(0)
    times = []
    for i in range(repeats + 1):
        props = s.ask_batch(m)
        for p in props[:-1]:
            s.tell(p.id, rng.random())
        t = time.perf_counter()
        s.tell(props[-1].id, rng.random())
        if i:  # the first update pays one-off costs (optimizer state, lazy imports)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def state_bytes(kind: str, space_type: str) -> int:
    """Serialized state after 3 updates with 10 proposals still in flight."""
    s = make_strategy(kind, make_space(space_type))
    m = s.config.batch_size
    props = s.ask_batch(3 * m + 10)
    for p in props[: 3 * m]:
        s.tell(p.id, 0.5)
    return len(s.to_bytes())


def configmap_note(size: int) -> str:
    """Whether one ConfigMap holds the state, and with how much room for pending proposals."""
    if size < CONFIGMAP_BYTES:
        return f"fits, {(CONFIGMAP_BYTES - size) / 1024:.0f} KiB spare"
    return f"chunked, {-(-size // CONFIGMAP_BYTES)} parts"


def run(quick: bool) -> str:
    torch.set_num_threads(1)
    repeats = 3 if quick else 15
    rows = []
    for space_type in SPACES:
        space = make_space(space_type)
        probe = make_strategy("reinforce", space)
        single, batched = ask_ms(space_type, repeats)
        size = state_bytes("ppo", space_type)
        rows.append([
            space_type,
            space.num_tokens,
            f"{probe.config.lstm_layers}x{probe.config.hidden_size}",
            single,
            batched,
            update_ms("reinforce", space_type, 8, repeats),
            update_ms("reinforce", space_type, 20, repeats),
            update_ms("ppo", space_type, 20, repeats),
            size,
            configmap_note(size),
        ])
    header = (
        f"Controller cost per space (paper defaults), median of {repeats}, "
        f"torch threads {torch.get_num_threads()}"
    )
    table = format_table(
        [
            "space", "tokens", "LSTM", "ask ms", "ask ms (batch 8, each)",
            "REINFORCE update m=8 ms", "REINFORCE update m=20 ms", "PPO update m=20 ms",
            "state bytes", "1 MiB ConfigMap",
        ],
        rows,
    )
    return f"{header}\n\n{table}"


def main() -> None:
    bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
