"""The papers' controller hyper-parameters per search space.

Tags as in docs/papers.md: [P] from the paper, [C] from the reference code, and
"ours" where neither says. Where paper and code disagree the paper's value is
the default; every value can be overridden in ``spec.strategy``.
"""

from __future__ import annotations

from typing import Any

_ZOPH_LE_CNN: dict[str, Any] = {
    "lstm_layers": 2,  # [P] 2-layer LSTM
    "hidden_size": 35,  # [P] 35 units per layer
    "init_range": 0.08,  # [P] U(-0.08, 0.08)
    "learning_rate": 6e-4,  # [P] Adam 0.0006
    "batch_size": 8,  # [P] m = 8 children per replica update
    "baseline_decay": 0.95,  # ours: the paper gives none; NASNet's 0.95
    "entropy_weight": 0.0,  # [P] no entropy term is mentioned
}

_ZOPH_LE_RNN: dict[str, Any] = {
    **_ZOPH_LE_CNN,
    "learning_rate": 5e-4,  # [P] 0.0005 for the recurrent-cell search
    # [P] m = 1 per replica, but the parameter server applies an update after
    # every 10 accumulated gradients: 10 rewards per update.
    "batch_size": 10,
}

_NASNET: dict[str, Any] = {
    "lstm_layers": 1,  # [P] one layer
    "hidden_size": 100,  # [P] 100 units
    "init_range": 0.1,  # [P] U(-0.1, 0.1)
    "learning_rate": 3.5e-4,  # [P] 0.00035
    "batch_size": 20,  # [P] minibatches of 20 architectures
    "baseline_decay": 0.95,  # [P] EMA 0.95
    "entropy_weight": 1e-5,  # [P] 0.00001
    "entropy_mode": "loss",  # ours: the paper does not say where the bonus goes
}

_ENAS_COMMON: dict[str, Any] = {
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

_ENAS_MACRO: dict[str, Any] = {
    **_ENAS_COMMON,
    "batch_size": 20,  # [C] 20 samples aggregated per controller step (macro)
    "skip_target": 0.4,  # [P] KL towards rho = 0.4
    "skip_weight": 0.8,  # [P] weight 0.8 ([C] adds it to the loss, as we do)
}

_ENAS_MICRO: dict[str, Any] = {
    **_ENAS_COMMON,
    "batch_size": 10,  # [C] 10 samples aggregated per controller step (micro)
}

_ENAS_RNN: dict[str, Any] = {
    **_ENAS_COMMON,
    "baseline_decay": 0.999,  # [C] enas_lm 0.999
    "entropy_weight": 1e-4,  # [P] 1e-4 for PTB (≠ [C] enas_lm 1e-5)
    "batch_size": 10,  # [C] enas_lm 25 x 10 samples per epoch
}

CONTROLLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "zoph-le-cnn": _ZOPH_LE_CNN,
    "zoph-le-rnn": _ZOPH_LE_RNN,
    "nasnet": _NASNET,
    "enas-macro": _ENAS_MACRO,
    "enas-micro": _ENAS_MICRO,
    "enas-rnn": _ENAS_RNN,
}
"""searchSpace.type -> controller defaults (snake_case field names of ``PolicyConfig``)."""

CONTROLLER_STRATEGIES = frozenset({"reinforce", "ppo"})


def defaults_for(strategy_type: str, space_type: str) -> dict[str, Any]:
    """The paper defaults for this pair ({} where only the config model's own defaults apply)."""
    if strategy_type not in CONTROLLER_STRATEGIES:
        return {}
    return dict(CONTROLLER_DEFAULTS.get(space_type, {}))
