"""The LSTM controller: a proper distribution over exactly the space's token lists.

A tiny space (two shared-head choices, one narrower than its group, and anchors
with skip sigmoids) is small enough to enumerate: the probabilities of all its
token lists must sum to one, sampling must follow them, and the fused scoring
path must agree with step-by-step sampling. The real spaces are checked too.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import pytest
import torch

from controller_policy.spaces import make_space
from controller_policy.spaces.base import Anchor, Choice, SearchSpace, SpaceOptions
from controller_policy.strategies.controller import Controller

REAL_SPACES = ["zoph-le-cnn", "zoph-le-rnn", "nasnet", "enas-macro", "enas-micro", "enas-rnn"]


class TinyOptions(SpaceOptions):
    pass


class TinySpace(SearchSpace):
    """op0 (3 values), anchor 0, op1 (2 of the group's 3 values), anchor 1 <- 0, pick (4 values)."""

    type_name = "tiny"
    kind = "image"
    options_model = TinyOptions

    def build_steps(self) -> list[Any]:
        return [
            Choice("op0", "op", ("a", "b", "c")),
            Anchor("layer0", 0, ()),
            Choice("op1", "op", ("a", "b")),
            Anchor("layer1", 1, (0,)),
            Choice("pick", "pick", (0, 1, 2, 3)),
            Anchor("layer2", 2, (0, 1)),
        ]

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        return {"space": "tiny", "vocabulary": ["a", "b", "c"], "tokens": tokens}

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        return list(genotype["tokens"])


def all_token_lists(space: SearchSpace) -> list[list[int]]:
    return [list(t) for t in itertools.product(*(range(s.num_values) for s in space.slots))]


def tiny_controller(**kw: Any) -> Controller:
    args: dict[str, Any] = {"hidden_size": 16, "init_range": 0.5, "seed": 3, **kw}
    return Controller(TinySpace().steps, **args)


@pytest.mark.parametrize("kw", [{}, {"lstm_layers": 2}, {"temperature": 5.0, "tanh_constant": 2.5}])
def test_probabilities_of_every_token_list_sum_to_one(kw: dict[str, Any]) -> None:
    space = TinySpace()
    ctrl = tiny_controller(**kw)
    seqs = all_token_lists(space)
    assert len(seqs) == 3 * 2 * 2 * 4 * 2 * 2  # choices and 3 skip bits
    with torch.no_grad():
        log_prob, _ = ctrl.evaluate(seqs)
    assert math.isclose(float(log_prob.double().exp().sum()), 1.0, abs_tol=1e-5)


def test_per_step_entropies_add_up_to_the_sequence_entropy_in_expectation() -> None:
    # Chain rule: H(sequence) = E[sum of the per-step entropies along the path].
    space = TinySpace()
    ctrl = tiny_controller()
    seqs = all_token_lists(space)
    with torch.no_grad():
        log_prob, entropy = ctrl.evaluate(seqs)
    p = log_prob.double().exp()
    exact = float(-(p * log_prob.double()).sum())
    expected_step_entropy = float((p * entropy.double()).sum())
    assert math.isclose(exact, expected_step_entropy, rel_tol=1e-4)


def test_sampling_follows_the_scored_probabilities() -> None:
    space = TinySpace()
    ctrl = tiny_controller(init_range=1.0)
    gen = torch.Generator().manual_seed(0)
    n = 20000
    with torch.no_grad():
        tokens, log_prob, _ = ctrl.sample(gen, n)
        scored, _ = ctrl.evaluate(tokens)
    assert torch.allclose(log_prob, scored, atol=1e-5)
    counts = Counter(tuple(t) for t in tokens.tolist())
    with torch.no_grad():
        probs = ctrl.evaluate(all_token_lists(space))[0].exp()
    # Largest-probability sequences: empirical frequency within 4 standard errors.
    for seq, p in sorted(zip(all_token_lists(space), probs.tolist(), strict=True), key=lambda x: -x[1])[:5]:
        freq = counts[tuple(seq)] / n
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (seq, freq, p)


def test_a_choice_narrower_than_its_group_never_emits_the_extra_values() -> None:
    ctrl = tiny_controller(init_range=2.0)
    with torch.no_grad():
        ctrl.heads_b[0][2] = 50.0  # value "c" would win everywhere it is allowed
        tokens, _, _ = ctrl.sample(torch.Generator().manual_seed(1), 500)
    assert set(tokens[:, 0].tolist()) == {2}
    assert set(tokens[:, 1].tolist()) <= {0, 1}


def test_tanh_constant_bounds_how_peaked_a_decision_can_get() -> None:
    ctrl = tiny_controller(init_range=3.0, tanh_constant=1.5, temperature=0.1)
    with torch.no_grad():
        log_prob, _ = ctrl.evaluate(all_token_lists(TinySpace()))
    # With logits in [-c, c], every 3-way choice keeps p >= e^-2c / (1 + 2) and every
    # 2-way decision p >= e^-2c / 2: the product over the six decisions bounds each sequence.
    c = 1.5
    floor = (math.exp(-2 * c) / 3) * (math.exp(-2 * c) / 2) ** 3 * (math.exp(-2 * c) / 4) * (math.exp(-2 * c) / 2)
    assert float(log_prob.exp().min()) >= floor * 0.999


def test_skip_probabilities_follow_the_attention_formula() -> None:
    ctrl = tiny_controller(lstm_layers=2)
    seq = [1, 0, 1, 3, 1, 0]  # op0=b, op1=a, skip 0->1 on, pick=3, skips 0->2 on, 1->2 off
    with torch.no_grad():
        base, _ = ctrl.evaluate(seq)
        flipped, _ = ctrl.evaluate(seq[:5] + [1])
        # Recompute P(1->2) by hand from the anchor states the LSTM produced.
        states: list[torch.Tensor] = []
        h = [torch.zeros(1, 16) for _ in range(2)]
        c = [torch.zeros(1, 16) for _ in range(2)]
        x = ctrl.start

        def step(inp: torch.Tensor) -> torch.Tensor:
            for layer in range(2):
                gates = inp @ ctrl.w_ih[layer].T + ctrl.b_lstm[layer] + h[layer] @ ctrl.w_hh[layer].T
                i, f, g, o = gates.chunk(4, dim=1)
                c[layer] = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
                h[layer] = torch.sigmoid(o) * torch.tanh(c[layer])
                inp = h[layer]
            return inp

        step(x)
        states.append(step(ctrl.embeddings[0][1:2]))  # anchor 0 after op0=b
        step(ctrl.start)  # an anchor without sources feeds the start embedding back
        states.append(step(ctrl.embeddings[0][0:1]))  # anchor 1 after op1=a
        step((states[0]) / 2.0)  # skip 0->1 on: mean of selected anchors, /(1 + count)
        this = step(ctrl.embeddings[1][3:4])  # anchor 2 after pick=3
        u = (torch.tanh(states[1] @ ctrl.w_prev.T + this @ ctrl.w_curr.T) * ctrl.v_attn).sum()
    p_on = torch.sigmoid(u)
    assert math.isclose(float(flipped - base), float(torch.log(p_on) - torch.log1p(-p_on)), abs_tol=1e-4)


def test_building_and_sampling_never_touch_the_global_rng() -> None:
    before = torch.get_rng_state().clone()
    ctrl = tiny_controller()
    with torch.no_grad():
        ctrl.sample(torch.Generator().manual_seed(0), 4)
    assert torch.equal(before, torch.get_rng_state())


def test_same_seed_same_weights_and_samples() -> None:
    a, b = tiny_controller(seed=9), tiny_controller(seed=9)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with torch.no_grad():
        ta = a.sample(torch.Generator().manual_seed(5), 16)[0]
        tb = b.sample(torch.Generator().manual_seed(5), 16)[0]
    assert torch.equal(ta, tb)
    assert not torch.equal(tiny_controller(seed=10).start, a.start)


def test_init_range_bounds_every_weight() -> None:
    ctrl = tiny_controller(init_range=0.08)
    assert all(float(p.detach().abs().max()) <= 0.08 for p in ctrl.parameters())


def test_log_prob_gradient_reaches_every_parameter_it_depends_on() -> None:
    ctrl = tiny_controller()
    log_prob, entropy = ctrl.evaluate([[1, 0, 1, 3, 1, 0], [2, 1, 0, 0, 0, 1]])
    (log_prob.sum() + entropy.sum()).backward()
    for name, p in ctrl.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_bad_token_shapes_are_rejected() -> None:
    ctrl = tiny_controller()
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        ctrl.evaluate([0, 1, 2])


def test_anchor_reading_an_unrecorded_anchor_is_refused() -> None:
    with pytest.raises(ValueError, match="reads anchors"):
        Controller([Anchor("l0", 0, (5,))])


@pytest.mark.parametrize("space_type", REAL_SPACES)
def test_real_spaces_sample_valid_architectures_and_score_them_consistently(space_type: str) -> None:
    space = make_space(space_type)
    ctrl = Controller(space.steps, hidden_size=32, init_range=0.5, temperature=5.0, tanh_constant=2.5)
    with torch.no_grad():
        tokens, log_prob, entropy = ctrl.sample(torch.Generator().manual_seed(0), 6)
        scored, scored_entropy = ctrl.evaluate(tokens)
    assert tokens.shape == (6, space.num_tokens)
    for row in tokens.tolist():
        space.validate_tokens(row)
    assert torch.allclose(log_prob, scored, atol=1e-4)
    assert torch.allclose(entropy, scored_entropy, atol=1e-4)
    assert bool((log_prob < 0).all())
