"""Build time and forward+backward time of a sampled child per search space, on this CPU.

Each space samples a few architectures (fixed seeds); the figure is the median
over them, at the sizes below (image: CIFAR-shaped 3x32x32 batch of 32, N=2
cells per stage, F=16; language: batch 32 x 35 steps, hidden 64, vocab 1000).
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.table import bench_main, format_table
from controller_policy.contract import ModelSpec
from controller_policy.spaces import make_space
from nas_trainer.models import build_model

SPACES = ["zoph-le-cnn", "enas-macro", "nasnet", "enas-micro", "zoph-le-rnn", "enas-rnn"]
IMAGE_SHAPE = (3, 32, 32)
BATCH = 32
VOCAB = 1000
BPTT = 35


def time_child(space_type: str, seed: int) -> tuple[float, float, int]:
    """(build seconds, forward+backward seconds, parameters) of one sampled child."""
    space = make_space(space_type)
    arch = space.architecture(space.sample(seed))
    spec = ModelSpec(cellsPerStage=2, filters=16, embeddingSize=64, hiddenSize=64)
    start = time.perf_counter()
    if space.kind == "image":
        model = build_model(arch, spec, input_shape=IMAGE_SHAPE, num_classes=10)
        x = torch.randn(BATCH, *IMAGE_SHAPE)
        y = torch.randint(0, 10, (BATCH,))
    else:
        model = build_model(arch, spec, vocab_size=VOCAB)
        x = torch.randint(0, VOCAB, (BATCH, BPTT))
        y = torch.randint(0, VOCAB, (BATCH, BPTT))
    built = time.perf_counter()
    model.train()
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    done = time.perf_counter()
    params = sum(p.numel() for p in model.parameters())
    return built - start, done - built, params


def run(quick: bool) -> str:
    torch.manual_seed(0)
    samples = 2 if quick else 5
    rows = []
    for space_type in SPACES:
        results = [time_child(space_type, seed) for seed in range(samples)]
        rows.append([
            space_type,
            make_space(space_type).num_tokens,
            statistics.median(r[0] for r in results) * 1000,
            statistics.median(r[1] for r in results) * 1000,
            int(statistics.median(r[2] for r in results)),
        ])
    header = (
        f"Sampled child per space: median of {samples} architectures, "
        f"torch threads {torch.get_num_threads()}"
    )
    table = format_table(
        ["space", "tokens", "build ms", "fwd+bwd ms", "params"], rows
    )
    return f"{header}\n\n{table}"


def main() -> None:
    bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
