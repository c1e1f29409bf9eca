"""REINFORCE with an EMA baseline (Zoph & Le 2017; ENAS's controller update).

grad J ~ (1/m) sum_k grad log P(tokens_k) (R_k - b)   [P] Zoph & Le eq. 2-3

Each reward updates the log-probability of exactly the token sequence that
earned it, recomputed with the current weights when the batch is applied (an
architecture sampled several updates ago is still credited as itself).
"""

from __future__ import annotations

import torch

from controller_policy.strategies.policy import PolicyStrategy


class Reinforce(PolicyStrategy):
    """Zoph & Le's policy-gradient controller; one Adam step per ``batch_size`` rewards."""

    type_name = "reinforce"
    default_batch_size = 8  # Zoph & Le's m

    def _loss_update(
        self, tokens: torch.Tensor, rewards: list[float], old_logp: torch.Tensor
    ) -> tuple[float, float, list[float]]:
        trace = self.controller.score(tokens)
        adv, effective = self._advantages(rewards, trace.entropy)
        loss = -(adv * trace.log_prob).mean() + self._regularizers(trace.entropy, trace.skip_kl)
        self._step(loss)
        return float(loss.detach()), float(trace.entropy.detach().mean()), effective
