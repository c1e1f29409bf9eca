"""What a user of ``make_strategy`` / ask / tell relies on, strategy by strategy."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy
import pytest
import torch
from pydantic import ValidationError

from controller_policy.spaces import make_space
from controller_policy.spaces.base import Choice, InvalidArchitecture, SearchSpace, SpaceOptions
from controller_policy.strategies import STRATEGIES, StrategyError, make_strategy


# --- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "space_type", "expected"),
    [
        ("reinforce", "zoph-le-cnn", {"lstm_layers": 2, "hidden_size": 35, "learning_rate": 6e-4,
                                      "init_range": 0.08, "batch_size": 8}),
        ("reinforce", "zoph-le-rnn", {"learning_rate": 5e-4, "hidden_size": 35}),
        ("ppo", "nasnet", {"lstm_layers": 1, "hidden_size": 100, "learning_rate": 3.5e-4,
                           "entropy_weight": 1e-5, "baseline_decay": 0.95, "init_range": 0.1,
                           "batch_size": 20, "clip_epsilon": 0.2}),
        ("reinforce", "enas-micro", {"hidden_size": 100, "tanh_constant": 2.5, "temperature": 5.0,
                                     "learning_rate": 3.5e-4, "baseline_decay": 0.99,
                                     "entropy_weight": 1e-4, "entropy_mode": "reward"}),
        ("reinforce", "enas-macro", {"skip_target": 0.4, "skip_weight": 0.8, "baseline_decay": 0.99}),
        ("reinforce", "enas-rnn", {"baseline_decay": 0.999, "entropy_weight": 1e-4}),
    ],
)
def test_paper_defaults_per_space(kind: str, space_type: str, expected: dict) -> None:
    strategy = make_strategy(kind, make_space(space_type))
    for field, value in expected.items():
        assert getattr(strategy.config, field) == value, field
    assert strategy.controller.hidden_size == strategy.config.hidden_size
    assert strategy.controller.lstm_layers == strategy.config.lstm_layers


def test_settings_override_defaults_in_either_spelling() -> None:
    space = make_space("nasnet")
    s = make_strategy("ppo", space, {"batchSize": 4, "learning_rate": 1e-3, "clipEpsilon": 0.1})
    assert (s.config.batch_size, s.config.learning_rate, s.config.clip_epsilon) == (4, 1e-3, 0.1)
    assert s.config.entropy_weight == 1e-5  # untouched defaults stay
    assert make_strategy("ppo", space, {"type": "ppo"}).config.batch_size == 20
    with pytest.raises(StrategyError, match="'batchSize' is given twice"):
        make_strategy("ppo", space, {"batchSize": 4, "batch_size": 5})
    with pytest.raises(StrategyError, match="'reinforce', not 'ppo'"):
        make_strategy("ppo", space, {"type": "reinforce"})


@pytest.mark.parametrize(
    ("kind", "settings", "field"),
    [
        ("reinforce", {"batchSize": 0}, "batchSize"),
        ("reinforce", {"learningRate": -1.0}, "learningRate"),
        ("reinforce", {"baselineDecay": 1.0}, "baselineDecay"),
        ("reinforce", {"hiddenSize": "big"}, "hiddenSize"),
        ("reinforce", {"entropyMode": "sideways"}, "entropyMode"),
        ("ppo", {"clipEpsilon": 0.0}, "clipEpsilon"),
        ("ppo", {"ppoEpochs": 0}, "ppoEpochs"),
        ("ppo", {"failureReward": float("nan")}, "failureReward"),
        ("evolution", {"populationSize": 1}, "populationSize"),
        ("evolution", {"populationSize": 10, "sampleSize": 11}, "sampleSize"),
        ("random", {"seed": "x"}, "seed"),
        ("random", {"colour": "blue"}, "colour"),
        ("evolution", {"learningRate": 0.1}, "learningRate"),
    ],
)
def test_bad_settings_name_the_field(kind: str, settings: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        make_strategy(kind, make_space("enas-micro"), settings)


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(StrategyError, match="evolution.*ppo.*random.*reinforce"):
        make_strategy("bayes", make_space("nasnet"))
    assert set(STRATEGIES) == {"reinforce", "ppo", "evolution", "random"}


# --- common ask/tell behaviour ------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_proposals_are_valid_unique_and_pending_until_told(kind: str) -> None:
    space = make_space("enas-micro")
    s = make_strategy(kind, space, {"seed": 1, "batchSize": 2} if kind in ("reinforce", "ppo") else {"seed": 1})
    props = [s.ask() for _ in range(3)] + s.ask_batch(4) + s.ask_batch(0)
    assert [p.id for p in props] == list(range(7))
    for p in props:
        assert p.architecture.space == "enas-micro"
        assert space.validate_tokens(p.architecture.tokens) == p.architecture.tokens
    assert s.pending == list(range(7))
    s.tell(5, numpy.float32(0.3))  # any real number type the operator may compute with
    s.tell_failure(2)
    s.tell(0, 0.9)
    assert s.pending == [1, 3, 4, 6]
    summary = s.summary()
    json.dumps(summary)  # small, JSON-able status
    assert (summary["asked"], summary["told"], summary["failed"]) == (7, 2, 1)
    assert summary["best_reward"] == 0.9 and summary["best_id"] == 0
    assert isinstance(json.loads(json.dumps(summary))["best_reward"], float)


def test_controller_summary_reports_updates_baseline_entropy_and_timing() -> None:
    space = make_space("zoph-le-rnn")
    s = make_strategy("reinforce", space, {"batchSize": 2})
    first = s.summary()
    assert first["updates"] == 0 and first["baseline"] is None
    for p in s.ask_batch(4):
        s.tell(p.id, 0.5)
    summary = s.summary()
    assert summary["updates"] == 2
    assert summary["baseline"] == pytest.approx(0.5)
    assert 0 < summary["last_mean_entropy"] < sum(math.log(slot.num_values) for slot in space.slots)
    assert summary["last_update_seconds"] > 0
    assert json.loads(json.dumps(summary)) == summary


# --- REINFORCE / PPO -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["reinforce", "ppo"])
def test_one_update_per_batch_size_rewards_in_arrival_order(kind: str) -> None:
    s = make_strategy(kind, make_space("enas-micro"), {"batchSize": 3})
    props = s.ask_batch(7)
    s.tell_failure(props[6].id)  # no failureReward: not learned from
    for i, p in enumerate(reversed(props[:5])):
        s.tell(p.id, 0.1 * i)
    assert s.summary()["updates"] == 1 and s.summary()["buffered_rewards"] == 2
    assert [b[0] for b in s.buffer] == [props[1].id, props[0].id]
    s.tell(props[5].id, 0.0)
    assert s.summary()["updates"] == 2 and not s.buffer


def test_failure_reward_is_learned_when_configured() -> None:
    s = make_strategy("reinforce", make_space("enas-micro"), {"batchSize": 2, "failureReward": -1.0})
    a, b = s.ask_batch(2)
    s.tell_failure(a.id)
    assert s.buffer[0][2] == -1.0
    s.tell(b.id, 1.0)
    assert s.summary()["updates"] == 1
    assert s.summary()["best_reward"] == 1.0  # a failure is never "best"


@pytest.mark.parametrize("kind", ["reinforce", "ppo"])
def test_each_reward_moves_the_log_prob_of_exactly_its_own_architecture(kind: str) -> None:
    space = make_space("nasnet")
    s = make_strategy(kind, space, {"batchSize": 2, "learningRate": 0.01, "entropyWeight": 0.0})
    good, bad = s.ask_batch(2)

    def logp(p) -> float:
        with torch.no_grad():
            return float(s.controller.evaluate(p.architecture.tokens)[0])

    before = logp(good), logp(bad)
    s.tell(bad.id, 0.0)  # rewards arrive in the opposite order
    s.tell(good.id, 1.0)
    assert logp(good) > before[0]
    assert logp(bad) < before[1]


def test_ppo_keeps_the_sampling_log_prob_and_clips_stale_proposals() -> None:
    space = make_space("nasnet")
    s = make_strategy(
        "ppo", space,
        {"batchSize": 1, "learningRate": 0.05, "entropyWeight": 0.0, "ppoEpochs": 1, "adamBeta1": 0.0},
    )
    stale = s.ask()
    with torch.no_grad():
        sampled = float(s.controller.evaluate(stale.architecture.tokens)[0])
    assert stale.extras["log_prob"] == pytest.approx(sampled, abs=1e-4)
    stale.extras["log_prob"] = 0.0  # the client's copy is not what the update trusts
    for i in range(6):  # move the policy well away from where `stale` was sampled
        p = s.ask()
        s.tell(p.id, float(i % 2))
    with torch.no_grad():
        now = float(s.controller.evaluate(stale.architecture.tokens)[0])
    ratio = math.exp(now - s.ledger.pending[stale.id].extras["log_prob"])
    assert abs(ratio - 1) > 0.2, "the test needs a proposal outside the clip range"
    # Advantage in the direction the ratio already moved: the clipped objective is
    # flat there, so with beta1 = 0 the update leaves every weight where it was.
    reward = s.baseline + (1.0 if ratio > 1 else -1.0)
    weights = [p.detach().clone() for p in s.controller.parameters()]
    s.tell(stale.id, reward)
    assert s.summary()["updates"] == 7
    assert s.summary()["last_clip_fraction"] == 1.0
    assert all(torch.equal(w, p) for w, p in zip(weights, s.controller.parameters(), strict=True))


def test_reinforce_does_learn_from_the_same_stale_proposal() -> None:
    space = make_space("nasnet")
    s = make_strategy("reinforce", space, {"batchSize": 1, "learningRate": 0.05, "adamBeta1": 0.0})
    stale = s.ask()
    for i in range(6):
        p = s.ask()
        s.tell(p.id, float(i % 2))
    weights = [p.detach().clone() for p in s.controller.parameters()]
    s.tell(stale.id, s.baseline + 1.0)
    assert not all(torch.equal(w, p) for w, p in zip(weights, s.controller.parameters(), strict=True))


# --- regularized evolution --------------------------------------------------------------------
def test_evolution_asks_randomly_until_the_population_fills_then_mutates_one_decision() -> None:
    space = make_space("enas-micro")
    s = make_strategy("evolution", space, {"populationSize": 4, "sampleSize": 2, "seed": 3})
    early = s.ask_batch(10)  # many in flight, no rewards yet: all random
    assert {p.extras["origin"] for p in early} == {"random"}
    for i, p in enumerate(early[:3]):
        s.tell(p.id, 0.1 * i)
    assert s.ask().extras["origin"] == "random"  # 3 < P rewards so far
    s.tell(early[3].id, 0.5)
    tokens = {p.id: p.architecture.tokens for p in early}
    for _ in range(30):
        child = s.ask()
        assert child.extras["origin"] == "mutation"
        parent = tokens[child.extras["parent"]]
        diff = [i for i, (a, b) in enumerate(zip(parent, child.architecture.tokens, strict=True)) if a != b]
        assert diff == [child.extras["mutated_position"]]


def test_evolution_removes_the_oldest_not_the_worst() -> None:
    s = make_strategy("evolution", make_space("nasnet"), {"populationSize": 3, "sampleSize": 3})
    props = s.ask_batch(5)
    rewards = [0.9, 0.1, 0.2, 0.3, 0.4]
    for p, r in zip(props, rewards, strict=True):
        s.tell(p.id, r)
    assert [pid for pid, _, _ in s.population] == [props[2].id, props[3].id, props[4].id]
    assert s.summary()["population_best"] == 0.4  # the best (0.9) aged out
    assert s.summary()["best_reward"] == 0.9  # but is still the search's best


def test_evolution_tournament_favours_the_fittest() -> None:
    s = make_strategy("evolution", make_space("nasnet"), {"populationSize": 4, "sampleSize": 4, "seed": 0})
    props = s.ask_batch(4)
    for p, r in zip(props, [0.0, 0.1, 0.2, 0.9], strict=True):
        s.tell(p.id, r)
    parents = Counter(s.ask().extras["parent"] for _ in range(200))
    # P(best among 4 draws with replacement) = 1 - (3/4)^4 ~ 0.68.
    assert parents[props[3].id] > 0.55 * 200
    assert parents[props[3].id] > max(parents[p.id] for p in props[:3])


def test_evolution_failures_join_only_with_a_failure_reward() -> None:
    space = make_space("nasnet")
    plain = make_strategy("evolution", space, {"populationSize": 3, "sampleSize": 2})
    scored = make_strategy("evolution", space, {"populationSize": 3, "sampleSize": 2, "failureReward": 0.0})
    for s in (plain, scored):
        s.tell_failure(s.ask().id)
    assert (len(plain.population), len(scored.population)) == (0, 1)


# --- random search ------------------------------------------------------------------------------
def test_random_search_is_uniform_per_position() -> None:
    space = make_space("zoph-le-rnn")
    s = make_strategy("random", space, {"seed": 4})
    n = 1500
    rows = [p.architecture.tokens for p in s.ask_batch(n)]
    for slot in space.slots:
        counts = Counter(r[slot.position] for r in rows)
        expected = n / slot.num_values
        assert set(counts) == set(range(slot.num_values)), slot.name
        worst = max(abs(counts[v] - expected) for v in range(slot.num_values))
        assert worst < 5 * math.sqrt(expected), slot.name


# --- spaces with rules across positions --------------------------------------------------------
class DistinctOps(SearchSpace):
    """Three 4-way choices that must all differ: a cross-position rule the samplers must respect."""

    type_name = "distinct-ops"
    kind = "image"
    options_model = SpaceOptions

    def build_steps(self) -> list[Any]:
        return [Choice(f"op{i}", "op", ("a", "b", "c", "d")) for i in range(3)]

    def check_semantics(self, tokens: list[int]) -> None:
        if len(set(tokens)) != 3:
            raise InvalidArchitecture(f"operations must differ, got {tokens}")

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        return {"space": self.type_name, "vocabulary": ["a", "b", "c", "d"], "ops": tokens}

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        return list(genotype["ops"])


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_every_strategy_only_proposes_architectures_the_space_accepts(kind: str) -> None:
    settings: dict[str, Any] = {"seed": 2}
    if kind == "evolution":
        settings |= {"populationSize": 3, "sampleSize": 2}
    if kind in ("reinforce", "ppo"):
        settings |= {"batchSize": 4, "hiddenSize": 8}
    s = make_strategy(kind, DistinctOps(), settings)
    seen = []
    for _ in range(10):
        props = s.ask_batch(4)
        for p in props:
            assert len(set(p.architecture.tokens)) == 3
            seen.append(tuple(p.architecture.tokens))
            s.tell(p.id, float(p.architecture.tokens[0]))
    assert len(set(seen)) > 1
