"""Suite-wide settings: deterministic hypothesis runs without wall-clock deadlines.

The suite runs on 2-core CI machines next to other work, so per-example
deadlines would only measure the machine's load; examples are derandomized so
a CI failure reproduces locally.
"""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "kubenas",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kubenas"))

# Two cores: one intra-op thread per test process keeps tiny models fast and
# leaves the other core to the trainer subprocesses some tests start.
torch.set_num_threads(1)
