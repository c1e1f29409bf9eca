"""The ENAS paper's controller settings, shared by its three spaces (docs/papers.md §7).

Tags as in docs/papers.md: [P] from the paper, [C] from the reference code, and
"ours" where neither says. Where paper and code disagree the paper's value is the
default; every value can be overridden in ``spec.strategy``.
"""

from __future__ import annotations

from typing import Any

ENAS_CONTROLLER: dict[str, Any] = {
    "lstm_layers": 1,  # [P] "an LSTM with 100 hidden units" (one layer)
    "hidden_size": 100,  # [P] 100 (≠ [C] 64)
    "init_range": 0.1,  # [P] U(-0.1, 0.1)
    "learning_rate": 3.5e-4,  # [P] 0.00035 (≠ [C] 1e-3 macro / 3.5e-3 micro)
    "temperature": 5.0,  # [P] u / 5.0 (≠ [C] CIFAR uses none)
    "tanh_constant": 2.5,  # [P] 2.5 tanh (≠ [C] 1.5 macro / 1.1 micro)
    # [C] 1e-4; the paper says 0.1 for CIFAR [?], which would swamp accuracies in [0, 1].
    "entropy_weight": 1e-4,
    "entropy_mode": "reward",  # [P] and [C]: the bonus is added to the reward
    "baseline_decay": 0.99,  # [C] 0.99 (paper gives none)
    # Adam betas/eps stay at PyTorch's defaults (paper gives none); [C] uses
    # beta1 = 0, eps = 1e-3: set adamBeta1 / adamEps to reproduce it.
}
