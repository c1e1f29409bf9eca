"""PPO over architectures (NASNet, Zoph et al. 2018).

The log-probability of each proposal is stored when it is sampled
(``Proposal.extras["log_prob"]``, and in the strategy's own pending record, which
is what the update trusts). The update maximises the clipped surrogate
min(rho A, clip(rho, 1-eps, 1+eps) A) with rho = exp(logp_new - logp_old), so a
stale proposal (sampled several updates ago) is weighted by how far the policy
has moved since, and clipped once that is more than eps.

NASNet gives lr, entropy weight, baseline and batch [P] but not eps or the
number of epochs: eps = 0.2 (the PPO paper's value) and 3 epochs are our choice.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.policy import PolicyConfig, PolicyStrategy


class PPOConfig(PolicyConfig):
    """PolicyConfig plus the clip and the epochs over each batch."""

    clip_epsilon: float = Field(default=0.2, gt=0, lt=1, description="PPO clip (our choice).")
    ppo_epochs: int = Field(default=3, ge=1, le=100, description="Passes over each batch.")


class PPO(PolicyStrategy):
    """NASNet's controller update: clipped policy-ratio objective, EMA baseline, entropy bonus."""

    type_name = "ppo"
    default_batch_size = 20  # NASNet's minibatch of 20 architectures
    config_model = PPOConfig
    config: PPOConfig

    def __init__(self, space: SearchSpace, config: PPOConfig | dict[str, Any] | None = None):
        super().__init__(space, config)
        self.stats.update({"last_clip_fraction": None, "last_approx_kl": None})
        self._last_clip: float | None = None
        self._last_kl: float | None = None

    def _loss_update(
        self, tokens: torch.Tensor, rewards: list[float], old_logp: torch.Tensor
    ) -> tuple[float, float, list[float]]:
        eps = self.config.clip_epsilon
        adv: torch.Tensor | None = None
        effective: list[float] = list(rewards)
        loss_value = mean_entropy = 0.0
        for _ in range(self.config.ppo_epochs):
            trace = self.controller.score(tokens)
            if adv is None:  # advantages are fixed for the whole batch
                adv, effective = self._advantages(rewards, trace.entropy)
            ratio = torch.exp(trace.log_prob - old_logp)
            surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
            loss = -surrogate.mean() + self._regularizers(trace.entropy, trace.skip_kl)
            self._step(loss)
            with torch.no_grad():
                self._last_clip = float(((ratio - 1).abs() > eps).float().mean())
                self._last_kl = float((old_logp - trace.log_prob).mean())
            loss_value, mean_entropy = float(loss.detach()), float(trace.entropy.detach().mean())
        return loss_value, mean_entropy, effective

    def _extra_stats(self) -> dict[str, float | None]:
        return {"last_clip_fraction": self._last_clip, "last_approx_kl": self._last_kl}
