"""The LSTM controller of Zoph & Le / NASNet / ENAS, driven by ``space.steps``.

One LSTM step per decision; the embedding of the decision just taken is the next
input (docs/papers.md §1). Every ``Choice`` reads one softmax head shared by its
``group`` and sliced to the choice's number of values. An ``Anchor`` takes one
step, records the top hidden state, and emits one Bernoulli skip token per
source anchor with P = sigmoid(v^T tanh(W_prev h_src + W_curr h_this)); the next
input is then the mean of the selected anchors' states (the ENAS code's rule,
[C]; Zoph & Le do not say what is fed back after a skip decision). An anchor
without sources feeds the start embedding back, as the ENAS code does for layer 0.

A step with a condition (``when``, a custom space's conditional decision) that does
not hold for the tokens before it is absent: its tokens are 0 with probability 1,
it adds nothing to the log-probability, entropy or skip KL, and the next input is
what token 0 would give. The LSTM still takes the step, so the structure stays the
same for every sequence and batching is unchanged.

Logits are transformed as ``c * tanh(u / T)`` (ENAS: c = 2.5, T = 5 [P]); both
are optional. Everything is batched: every sequence of a space has the same step
structure. Sampling must go step by step; scoring given tokens (the update's hot
path) runs each stretch of consecutive choices through one fused LSTM call and
one softmax per (group, width), because all of their inputs are known up front.

All parameters are plain tensors initialised from a private ``torch.Generator``
(never the global RNG), so building a controller never disturbs other code and
the same seed always gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from controller_policy.spaces.base import Anchor, Choice, Step

TokenBatch = Tensor | Sequence[Sequence[int]] | Sequence[int]


class Trace(NamedTuple):
    """Per-sequence results of one pass, each shaped ``(B,)`` and differentiable."""

    log_prob: Tensor
    entropy: Tensor
    skip_kl: Tensor
    """Sum over skip tokens of KL(Bernoulli(p) || Bernoulli(skip_target)); zero without a target."""


Gate = tuple[tuple[int, Tensor], ...]
"""A step's condition: (token position, allowed tokens as a tensor) pairs."""


@dataclass(frozen=True)
class _ChoiceOp:
    group: int
    num_values: int
    when: Gate = ()


@dataclass(frozen=True)
class _AnchorOp:
    index: int
    sources: tuple[int, ...]
    when: Gate = ()


def _present(op: _ChoiceOp | _AnchorOp, tokens: Tensor) -> Tensor | None:
    """(B,) bool: where the step exists given these tokens; None where it always does."""
    mask: Tensor | None = None
    for pos, allowed in op.when:
        hit = torch.isin(tokens[:, pos], allowed)
        mask = hit if mask is None else mask & hit
    return mask


@dataclass(frozen=True)
class _Run:
    """A stretch of consecutive choices, precomputed for fused scoring."""

    start: int  # first token position
    ops: tuple[_ChoiceOp, ...]
    emb_groups: tuple[tuple[int, Tensor], ...]  # (group, positions in run) fed as next inputs
    emb_order: Tensor  # restores run order after concatenating per-group embeddings
    heads: tuple[tuple[int, int, Tensor], ...]  # (group, width, positions in run)
    gated: bool = False  # some choice in the run has a condition


class Controller(nn.Module):
    """Autoregressive LSTM policy over a space's decision steps."""

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        lstm_layers: int = 1,
        hidden_size: int = 100,
        init_range: float = 0.1,
        temperature: float | None = None,
        tanh_constant: float | None = None,
        skip_target: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if lstm_layers < 1 or hidden_size < 1 or init_range <= 0:
            raise ValueError("lstm_layers and hidden_size must be >= 1 and init_range > 0")
        if skip_target is not None and not 0.0 < skip_target < 1.0:
            raise ValueError("skip_target must lie strictly between 0 and 1")
        self.hidden_size = hidden_size
        self.lstm_layers = lstm_layers
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.skip_target = skip_target

        self._plan, group_sizes = _compile(steps)
        self.num_tokens = sum(
            1 if isinstance(op, _ChoiceOp) else len(op.sources) for op in self._plan
        )
        self.has_skips = any(isinstance(op, _AnchorOp) and op.sources for op in self._plan)
        self.has_conditions = any(op.when for op in self._plan)
        self._segments = _segments(self._plan)

        h = hidden_size
        self.start = nn.Parameter(torch.empty(1, h))
        self.w_ih = nn.ParameterList(nn.Parameter(torch.empty(4 * h, h)) for _ in range(lstm_layers))
        self.w_hh = nn.ParameterList(nn.Parameter(torch.empty(4 * h, h)) for _ in range(lstm_layers))
        self.b_lstm = nn.ParameterList(nn.Parameter(torch.empty(4 * h)) for _ in range(lstm_layers))
        self.embeddings = nn.ParameterList(nn.Parameter(torch.empty(n, h)) for n in group_sizes)
        self.heads_w = nn.ParameterList(nn.Parameter(torch.empty(n, h)) for n in group_sizes)
        self.heads_b = nn.ParameterList(nn.Parameter(torch.empty(n)) for n in group_sizes)
        if self.has_skips:
            self.w_prev = nn.Parameter(torch.empty(h, h))
            self.w_curr = nn.Parameter(torch.empty(h, h))
            self.v_attn = nn.Parameter(torch.empty(1, h))
        self.register_buffer("_zero_bias", torch.zeros(4 * h), persistent=False)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=gen)

    # --- public API -------------------------------------------------------------
    def sample(
        self, generator: torch.Generator, batch_size: int = 1
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sample token sequences: ``(tokens (B, T) long, log_prob (B,), entropy (B,))``.

        Follows the caller's grad mode: strategies sample under ``torch.no_grad``
        and recompute with ``evaluate``; the ENAS trainer may keep the graph.
        """
        tokens, trace = self._sample(batch_size, generator)
        return tokens, trace.log_prob, trace.entropy

    def evaluate(self, tokens: TokenBatch) -> tuple[Tensor, Tensor]:
        """Log-probability and entropy of exactly these token sequences (teacher forcing)."""
        trace = self.score(tokens)
        return trace.log_prob, trace.entropy

    def score(self, tokens: TokenBatch) -> Trace:
        """Like ``evaluate`` but also returns the skip-KL term (ENAS macro)."""
        return self._score(self._as_batch(tokens))

    # --- shared pieces --------------------------------------------------------------
    def _as_batch(self, tokens: TokenBatch) -> Tensor:
        t = tokens if isinstance(tokens, Tensor) else torch.as_tensor(tokens, dtype=torch.long)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.dim() != 2 or t.shape[1] != self.num_tokens:
            raise ValueError(f"expected tokens shaped (B, {self.num_tokens}), got {tuple(t.shape)}")
        return t.long()

    def _transform(self, u: Tensor) -> Tensor:
        if self.temperature is not None:
            u = u / self.temperature
        if self.tanh_constant is not None:
            u = self.tanh_constant * torch.tanh(u)
        return u

    def _skips(
        self,
        op: _AnchorOp,
        h: Tensor,
        anchors_h: dict[int, Tensor],
        anchors_w: dict[int, Tensor],
        bits: Tensor | None,
        uniforms: Tensor | None,
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Skip tokens of one anchor: (bits, log_prob, entropy, kl, next input); where the
        anchor is absent (``present`` False) its bits are 0 and it scores nothing."""
        prev = torch.stack([anchors_w[s] for s in op.sources], dim=1)  # (B, k, H)
        query = F.linear(h, self.w_curr).unsqueeze(1)
        u = self._transform((torch.tanh(prev + query) * self.v_attn).sum(-1))  # (B, k)
        p = torch.sigmoid(u)
        if bits is None:
            assert uniforms is not None
            bits = (uniforms < p).long()
        if present is not None:
            bits = bits * present.unsqueeze(1)
        logp_on, logp_off = F.logsigmoid(u), F.logsigmoid(-u)
        fb = bits.to(u.dtype)
        log_prob = (fb * logp_on + (1 - fb) * logp_off).sum(1)
        entropy = -(p * logp_on + (1 - p) * logp_off).sum(1)
        if self.skip_target is not None:
            rho = self.skip_target
            kl = (p * (logp_on - math.log(rho)) + (1 - p) * (logp_off - math.log(1 - rho))).sum(1)
        else:
            kl = torch.zeros_like(log_prob)
        if present is not None:
            gate = present.to(u.dtype)
            log_prob, entropy, kl = log_prob * gate, entropy * gate, kl * gate
        hs = torch.stack([anchors_h[s] for s in op.sources], dim=1)
        x = (fb.unsqueeze(2) * hs).sum(1) / (1.0 + fb.sum(1, keepdim=True))
        return bits, log_prob, entropy, kl, x

    def _record(
        self, op: _AnchorOp, h: Tensor, anchors_h: dict[int, Tensor], anchors_w: dict[int, Tensor]
    ) -> None:
        """Keep an anchor's state, and its W_prev projection once for all later sigmoids."""
        anchors_h[op.index] = h
        if self.has_skips:
            anchors_w[op.index] = F.linear(h, self.w_prev)

    # --- sampling: step by step ---------------------------------------------------------
    def _sample(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Trace]:
        hsz = self.hidden_size
        zeros = self.start.new_zeros(batch, hsz)
        state = [(zeros, zeros) for _ in range(self.lstm_layers)]
        weights = list(zip(self.w_ih, self.w_hh, self.b_lstm, strict=True))
        emb, heads_w, heads_b = list(self.embeddings), list(self.heads_w), list(self.heads_b)
        # One uniform per token, drawn up front: each step then samples by inverse
        # CDF, cheaper than multinomial for small batches.
        uniforms = torch.rand(batch, self.num_tokens, generator=generator)
        start = self.start.expand(batch, hsz)
        x = start
        anchors_h: dict[int, Tensor] = {}
        anchors_w: dict[int, Tensor] = {}
        out: list[Tensor] = []
        log_prob = entropy = skip_kl = self.start.new_zeros(batch)
        # Tokens so far, for the conditions of later steps (only spaces that have some).
        drawn = torch.zeros(batch, self.num_tokens, dtype=torch.long) if self.has_conditions else None
        pos = 0
        for op in self._plan:
            for layer, (w_ih, w_hh, b) in enumerate(weights):
                state[layer] = torch.lstm_cell(x, state[layer], w_ih, w_hh, b, None)
                x = state[layer][0]
            h = x
            if isinstance(op, _ChoiceOp):
                n = op.num_values
                u = F.linear(h, heads_w[op.group][:n], heads_b[op.group][:n])
                logp_all = F.log_softmax(self._transform(u), dim=1)
                probs = logp_all.exp()
                tok = (probs.cumsum(1) < uniforms[:, pos : pos + 1]).sum(1).clamp_(max=n - 1)
                present = _present(op, drawn) if drawn is not None and op.when else None
                if present is None:
                    log_prob = log_prob + logp_all.gather(1, tok.unsqueeze(1)).squeeze(1)
                    entropy = entropy - (probs * logp_all).sum(1)
                else:
                    gate = present.to(logp_all.dtype)
                    tok = tok * present
                    log_prob = log_prob + logp_all.gather(1, tok.unsqueeze(1)).squeeze(1) * gate
                    entropy = entropy - (probs * logp_all).sum(1) * gate
                if drawn is not None:
                    drawn[:, pos] = tok
                x = F.embedding(tok, emb[op.group])
                out.append(tok.unsqueeze(1))
                pos += 1
                continue
            self._record(op, h, anchors_h, anchors_w)
            if not op.sources:
                x = start
                continue
            k = len(op.sources)
            present = _present(op, drawn) if drawn is not None and op.when else None
            bits, lp, ent, kl, x = self._skips(
                op, h, anchors_h, anchors_w, None, uniforms[:, pos : pos + k], present
            )
            log_prob, entropy, skip_kl = log_prob + lp, entropy + ent, skip_kl + kl
            if drawn is not None:
                drawn[:, pos : pos + k] = bits
            out.append(bits)
            pos += k
        toks = torch.cat(out, dim=1) if out else torch.zeros(batch, 0, dtype=torch.long)
        return toks, Trace(log_prob, entropy, skip_kl)

    # --- scoring: fused runs ----------------------------------------------------------------
    def _score(self, tokens: Tensor) -> Trace:
        batch, hsz, layers = tokens.shape[0], self.hidden_size, self.lstm_layers
        params: list[Tensor] = []
        for w_ih, w_hh, b in zip(self.w_ih, self.w_hh, self.b_lstm, strict=True):
            params += [w_ih, w_hh, b, self._zero_bias]
        emb, heads_w, heads_b = list(self.embeddings), list(self.heads_w), list(self.heads_b)
        h = c = self.start.new_zeros(layers, batch, hsz)
        start = self.start.expand(batch, hsz)
        x = start
        anchors_h: dict[int, Tensor] = {}
        anchors_w: dict[int, Tensor] = {}
        log_prob = entropy = skip_kl = self.start.new_zeros(batch)
        gates = self._gates(tokens) if self.has_conditions else None
        for seg in self._segments:
            if isinstance(seg, _Run):
                k = len(seg.ops)
                toks = tokens[:, seg.start : seg.start + k]
                inputs = [x.unsqueeze(0)]
                if k > 1:
                    parts = [F.embedding(toks[:, idx], emb[g]) for g, idx in seg.emb_groups]
                    fed = torch.cat(parts, dim=1).index_select(1, seg.emb_order)  # (B, k-1, H)
                    inputs.append(fed.transpose(0, 1))
                seq = torch.cat(inputs, dim=0)  # (k, B, H)
                outs, h, c = torch.lstm(seq, (h, c), params, True, layers, 0.0, False, False, False)
                for g, n, idx in seg.heads:
                    u = F.linear(outs.index_select(0, idx), heads_w[g][:n], heads_b[g][:n])
                    logp_all = F.log_softmax(self._transform(u), dim=2)  # (len, B, n)
                    picked = toks[:, idx].t().unsqueeze(2)
                    if gates is None or not seg.gated:
                        log_prob = log_prob + logp_all.gather(2, picked).squeeze(2).sum(0)
                        entropy = entropy - (logp_all.exp() * logp_all).sum((0, 2))
                        continue
                    gate = gates[:, seg.start + idx].t()  # (len, B)
                    log_prob = log_prob + (logp_all.gather(2, picked).squeeze(2) * gate).sum(0)
                    entropy = entropy - ((logp_all.exp() * logp_all).sum(2) * gate).sum(0)
                x = F.embedding(toks[:, k - 1], emb[seg.ops[-1].group])
                continue
            op, pos = seg
            outs, h, c = torch.lstm(x.unsqueeze(0), (h, c), params, True, layers, 0.0, False, False, False)
            top = outs[0]
            self._record(op, top, anchors_h, anchors_w)
            if not op.sources:
                x = start
                continue
            bits = tokens[:, pos : pos + len(op.sources)]
            present = _present(op, tokens) if op.when else None
            _, lp, ent, kl, x = self._skips(op, top, anchors_h, anchors_w, bits, None, present)
            log_prob, entropy, skip_kl = log_prob + lp, entropy + ent, skip_kl + kl
        return Trace(log_prob, entropy, skip_kl)

    def _gates(self, tokens: Tensor) -> Tensor:
        """(B, T) float: 1 where a choice's step exists for these tokens, 0 where it is absent."""
        gates = torch.ones(tokens.shape, dtype=self.start.dtype)
        pos = 0
        for op in self._plan:
            width = 1 if isinstance(op, _ChoiceOp) else len(op.sources)
            present = _present(op, tokens) if op.when else None
            if present is not None:
                gates[:, pos : pos + width] = present.to(gates.dtype).unsqueeze(1)
            pos += width
        return gates


def _gate(when: tuple[tuple[int, frozenset[int]], ...]) -> Gate:
    return tuple((pos, torch.tensor(sorted(allowed), dtype=torch.long)) for pos, allowed in when)


def _compile(steps: Sequence[Step]) -> tuple[list[_ChoiceOp | _AnchorOp], list[int]]:
    """Turn the space's steps into a plan; groups get ids in first-appearance order."""
    groups: dict[str, int] = {}
    sizes: list[int] = []
    plan: list[_ChoiceOp | _AnchorOp] = []
    seen_anchors: set[int] = set()
    for step in steps:
        if isinstance(step, Choice):
            if len(step.values) < 1:
                raise ValueError(f"choice {step.name!r} has no values")
            gid = groups.get(step.group)
            if gid is None:
                gid = groups[step.group] = len(sizes)
                sizes.append(0)
            sizes[gid] = max(sizes[gid], len(step.values))
            plan.append(_ChoiceOp(gid, len(step.values), _gate(step.when)))
        elif isinstance(step, Anchor):
            missing = [s for s in step.sources if s not in seen_anchors]
            if missing:
                raise ValueError(
                    f"anchor {step.name!r} reads anchors {missing} that no earlier step records"
                )
            seen_anchors.add(step.index)
            plan.append(_AnchorOp(step.index, tuple(step.sources), _gate(step.when)))
        else:
            raise TypeError(f"unknown step type {type(step).__name__}")
    return plan, sizes


def _segments(plan: list[_ChoiceOp | _AnchorOp]) -> list[_Run | tuple[_AnchorOp, int]]:
    """Group consecutive choices into runs; anchors stay single (their input depends on h)."""
    out: list[_Run | tuple[_AnchorOp, int]] = []
    run: list[_ChoiceOp] = []
    pos = run_start = 0

    def flush() -> None:
        if run:
            out.append(_make_run(run_start, tuple(run)))
            run.clear()

    for op in plan:
        if isinstance(op, _ChoiceOp):
            if not run:
                run_start = pos
            run.append(op)
            pos += 1
        else:
            flush()
            out.append((op, pos))
            pos += len(op.sources)
    flush()
    return out


def _make_run(start: int, ops: tuple[_ChoiceOp, ...]) -> _Run:
    emb_pos: dict[int, list[int]] = {}
    for i, op in enumerate(ops[:-1]):  # token i is the input of step i + 1
        emb_pos.setdefault(op.group, []).append(i)
    concat_order = [i for positions in emb_pos.values() for i in positions]
    emb_order = [0] * len(concat_order)
    for j, i in enumerate(concat_order):
        emb_order[i] = j
    head_pos: dict[tuple[int, int], list[int]] = {}
    for i, op in enumerate(ops):
        head_pos.setdefault((op.group, op.num_values), []).append(i)
    return _Run(
        start=start,
        ops=ops,
        emb_groups=tuple((g, torch.tensor(p)) for g, p in emb_pos.items()),
        emb_order=torch.tensor(emb_order, dtype=torch.long),
        heads=tuple((g, n, torch.tensor(p)) for (g, n), p in head_pos.items()),
        gated=any(op.when for op in ops),
    )
