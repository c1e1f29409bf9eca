"""What REINFORCE and PPO share: the controller, its optimizer, the baseline,
the buffer of rewards waiting for the next update, and exact checkpoints.

Rewards arrive in any order. Each is stored with the tokens of the proposal
that earned it and, once ``batch_size`` have arrived, the oldest ``batch_size``
are applied in one update that recomputes the log-probability of exactly those
token sequences (per-architecture credit assignment). Proposals whose reward
never arrives simply stay pending and cost nothing.

The EMA baseline starts as the mean reward of the first batch (papers do not say
how it starts; starting at 0 would make the whole first batch look good) and is
then updated with each applied reward in arrival order, after the batch's
advantages are computed.
"""

from __future__ import annotations

import copy
import time
from abc import abstractmethod
from typing import Any, Literal

import torch
from pydantic import Field

from controller_policy.spaces.base import Architecture, InvalidArchitecture, SearchSpace
from controller_policy.strategies.base import Proposal, Strategy, StrategyConfig, StrategyError
from controller_policy.strategies.controller import Controller
from controller_policy.strategies.proposal_book import ProposalBook
from controller_policy.strategies.sampling import first_valid


class PolicyConfig(StrategyConfig):
    """Controller and update hyper-parameters; per-space paper defaults live in ``defaults``."""

    lstm_layers: int = Field(default=1, ge=1, le=8, description="Stacked LSTM layers.")
    hidden_size: int = Field(default=100, ge=1, le=2048, description="LSTM units per layer.")
    init_range: float = Field(default=0.1, gt=0, le=1, description="Weights start U(-r, r).")
    temperature: float | None = Field(default=None, gt=0, description="Logits divided by T.")
    tanh_constant: float | None = Field(default=None, gt=0, description="Logits = c*tanh(u/T).")
    learning_rate: float = Field(default=3.5e-4, gt=0, le=10, description="Adam step size.")
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    adam_eps: float = Field(default=1e-8, gt=0)
    batch_size: int = Field(default=20, ge=1, le=100_000, description="m: rewards per update.")
    baseline_decay: float = Field(default=0.95, ge=0, lt=1, description="EMA baseline decay.")
    entropy_weight: float = Field(default=0.0, ge=0, description="Entropy bonus weight.")
    entropy_mode: Literal["loss", "reward"] = Field(
        default="loss",
        description="loss: the entropy gradient is added directly; reward: the bonus is added "
        "to each reward before the baseline (ENAS paper and code).",
    )
    skip_target: float | None = Field(
        default=None, gt=0, lt=1, description="rho of the skip-probability KL (ENAS macro)."
    )
    skip_weight: float = Field(default=0.0, ge=0, description="Weight of the skip KL in the loss.")
    grad_clip: float | None = Field(default=None, gt=0, description="Global gradient-norm clip.")


class PolicyStrategy(Strategy):
    """Base of the controller-driven strategies; subclasses supply ``_loss_update``."""

    config_model = PolicyConfig
    uses_controller_defaults = True
    config: PolicyConfig

    def __init__(self, space: SearchSpace, config: PolicyConfig | dict[str, Any] | None = None):
        super().__init__(space, config)
        self.controller = self._new_controller()
        self.optimizer = self._new_optimizer(self.controller)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.ledger = ProposalBook()
        self.buffer: list[tuple[int, list[int], float, dict[str, Any]]] = []
        self.baseline: float | None = None
        self.updates = 0
        self.stats: dict[str, float | None] = {
            "last_mean_entropy": None,
            "last_mean_reward": None,
            "last_update_seconds": None,
            "last_loss": None,
        }

    # --- construction -------------------------------------------------------------
    def _new_controller(self) -> Controller:
        c = self.config
        return Controller(
            self.space.steps,
            lstm_layers=c.lstm_layers,
            hidden_size=c.hidden_size,
            init_range=c.init_range,
            temperature=c.temperature,
            tanh_constant=c.tanh_constant,
            skip_target=c.skip_target,
            seed=c.seed,
        )

    def _new_optimizer(self, controller: Controller) -> torch.optim.Adam:
        c = self.config
        return torch.optim.Adam(
            controller.parameters(),
            lr=c.learning_rate,
            betas=(c.adam_beta1, c.adam_beta2),
            eps=c.adam_eps,
        )

    # --- ask/tell -------------------------------------------------------------------
    def ask(self) -> Proposal:
        """Sample one architecture from the current controller (no gradient kept)."""
        return self.ask_batch(1)[0]

    def ask_batch(self, n: int) -> list[Proposal]:
        """Sample ``n`` architectures in one batched pass of the current controller.

        A row the space rejects (cross-position rules) is replaced by single
        draws until one is valid.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise StrategyError(f"ask_batch needs a count >= 0, got {n!r}")
        if n == 0:
            return []
        with torch.no_grad():
            tokens, log_probs, _ = self.controller.sample(self.generator, n)
        drawn: list[tuple[Architecture, float]] = []
        for row, lp in zip(tokens.tolist(), log_probs.tolist(), strict=True):
            try:
                drawn.append((self.space.architecture(row), lp))
            except InvalidArchitecture:
                drawn.append(self._one_valid())
        out: list[Proposal] = []
        for arch, lp in drawn:  # registered only once every row is valid
            extras = {"log_prob": lp, "sampled_after_update": self.updates}
            pid = self.ledger.open(arch.tokens, extras)
            out.append(Proposal(id=pid, architecture=arch, extras=dict(extras)))
        return out

    def _one_valid(self) -> tuple[Architecture, float]:
        logps: list[float] = []

        def draw() -> list[int]:
            with torch.no_grad():
                tokens, log_prob, _ = self.controller.sample(self.generator)
            logps.append(float(log_prob[0]))
            return tokens[0].tolist()

        arch = first_valid(self.space, draw, f"the {self.type_name} controller")
        return arch, logps[-1]

    def tell(self, proposal_id: int, reward: float) -> None:
        reward = self.check_reward(reward)
        self.ledger.check(proposal_id)
        rec = self.ledger.close(proposal_id, reward)
        self._receive(proposal_id, rec.tokens, reward, rec.extras)

    def tell_failure(self, proposal_id: int) -> None:
        self.ledger.check(proposal_id)
        rec = self.ledger.close(proposal_id, None)
        if self.config.failure_reward is not None:
            self._receive(proposal_id, rec.tokens, float(self.config.failure_reward), rec.extras)

    @property
    def pending(self) -> list[int]:
        return sorted(self.ledger.pending)

    def _receive(self, pid: int, tokens: list[int], reward: float, extras: dict[str, Any]) -> None:
        self.buffer.append((pid, tokens, reward, extras))
        m = self.config.batch_size
        while len(self.buffer) >= m:
            batch, self.buffer = self.buffer[:m], self.buffer[m:]
            self._update(batch)

    # --- update ---------------------------------------------------------------------
    def _update(self, batch: list[tuple[int, list[int], float, dict[str, Any]]]) -> None:
        started = time.perf_counter()
        tokens = torch.tensor([b[1] for b in batch], dtype=torch.long)
        rewards = [b[2] for b in batch]
        old_logp = torch.tensor([b[3]["log_prob"] for b in batch], dtype=torch.float32)
        loss, mean_entropy, effective = self._loss_update(tokens, rewards, old_logp)
        decay = self.config.baseline_decay
        b = self.baseline if self.baseline is not None else sum(effective) / len(effective)
        for r in effective:
            b = decay * b + (1.0 - decay) * r
        self.baseline = b
        self.updates += 1
        self.stats = {
            "last_mean_entropy": mean_entropy,
            "last_mean_reward": sum(rewards) / len(rewards),
            "last_update_seconds": time.perf_counter() - started,
            "last_loss": loss,
            **self._extra_stats(),
        }

    def _advantages(self, rewards: list[float], entropy: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """Advantages against the baseline before this batch, and the rewards the baseline sees."""
        c = self.config
        effective = list(rewards)
        if c.entropy_mode == "reward" and c.entropy_weight > 0:
            ent = entropy.detach().tolist()
            effective = [r + c.entropy_weight * e for r, e in zip(rewards, ent, strict=True)]
        base = self.baseline if self.baseline is not None else sum(effective) / len(effective)
        adv = torch.tensor([r - base for r in effective], dtype=torch.float32)
        return adv, effective

    def _regularizers(self, entropy: torch.Tensor, skip_kl: torch.Tensor) -> torch.Tensor:
        """Entropy bonus (loss mode) and the ENAS skip KL, both as loss terms."""
        c = self.config
        extra = torch.zeros(())
        if c.entropy_mode == "loss" and c.entropy_weight > 0:
            extra = extra - c.entropy_weight * entropy.mean()
        if c.skip_target is not None and c.skip_weight > 0:
            extra = extra + c.skip_weight * skip_kl.mean()
        return extra

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.controller.parameters(), self.config.grad_clip)
        self.optimizer.step()

    @abstractmethod
    def _loss_update(
        self, tokens: torch.Tensor, rewards: list[float], old_logp: torch.Tensor
    ) -> tuple[float, float, list[float]]:
        """Apply the optimizer step(s); return (loss, mean entropy, rewards for the baseline)."""

    def _extra_stats(self) -> dict[str, float | None]:
        return {}

    # --- status and checkpoints -----------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.type_name,
            "updates": self.updates,
            "baseline": self.baseline,
            "buffered_rewards": len(self.buffer),
            "batch_size": self.config.batch_size,
            **self.ledger.summary(),
            **self.stats,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.state_header(),
            "controller": {k: v.detach().clone() for k, v in self.controller.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "ledger": self.ledger.state_dict(),
            "buffer": [[pid, list(t), r, copy.deepcopy(e)] for pid, t, r, e in self.buffer],
            "baseline": self.baseline,
            "updates": self.updates,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Build everything aside first, then swap, so a bad state changes nothing."""
        self.check_state_header(state)
        try:
            controller = self._new_controller()
            controller.load_state_dict(state["controller"])
            optimizer = self._new_optimizer(controller)
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
            generator = torch.Generator()
            generator.set_state(state["generator"].clone())
            ledger = ProposalBook()
            ledger.load_state_dict(state["ledger"])
            buffer = [(int(p), list(t), float(r), copy.deepcopy(e)) for p, t, r, e in state["buffer"]]
            baseline = None if state["baseline"] is None else float(state["baseline"])
            updates = int(state["updates"])
            stats = dict(state["stats"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise StrategyError(f"strategy state is incomplete or corrupt: {exc!r}") from exc
        self.controller, self.optimizer, self.generator = controller, optimizer, generator
        self.ledger, self.buffer, self.baseline = ledger, buffer, baseline
        self.updates, self.stats = updates, stats
