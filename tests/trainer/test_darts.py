"""DARTS mode (docs/papers.md §8): alpha moves under both orders, the derived cell is a valid
enas-micro genotype, the unrolled gradient matches its exact value, the skip-count early stop
ends the search, and a stopped search resumes bit-exactly (in process and after a real SIGTERM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from controller_policy.contract import DartsSpec, TrainingSpec
from controller_policy.spaces import make_space
from nas_trainer.checkpoint import CHECKPOINT_FILE, StopRequest
from nas_trainer.darts.bilevel import Bilevel
from nas_trainer.darts.collective import Collective
from nas_trainer.darts.derive import derive_cell, derive_tokens, skip_edges
from nas_trainer.darts.search import DartsSearch
from nas_trainer.darts.supernet import CANDIDATES, IDENTITY, DartsSupernet, edge_count
from nas_trainer.epochs import Interrupted
from nas_trainer.runtime import ConfigError
from nas_trainer.train_image import classification_loss
from tests.support.trainer import StopAtPoll, darts_doc, make_ctx, preempt_and_rerun

NONE = CANDIDATES.index("none")


def run_cli(tmp_path: Path, doc: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps(doc))
    env = {**os.environ, "KUBENAS_TERMINATION_FILE": str(tmp_path / "term"), "OMP_NUM_THREADS": "1"}
    env.pop("KUBENAS_REPORT_URL", None)
    proc = subprocess.run([sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
                          env=env, capture_output=True, text=True, timeout=240)
    return proc, json.loads((tmp_path / "term").read_text())


def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.endswith("_seconds") and k != "steps_per_second"}
            for h in history]


# --- derivation -----------------------------------------------------------------------------------
def test_derivation_keeps_the_two_strongest_non_none_inputs_per_node() -> None:
    alpha = torch.zeros(edge_count(2), len(CANDIDATES))
    # node 0 reads states 0, 1 (rows 0, 1); node 1 reads 0, 1, 2 (rows 2-4)
    alpha[0, NONE] = 9.0  # 'none' dominates edge 0 but is never kept: its best real op is 1
    alpha[0, 1] = 2.0
    alpha[1, 3] = 1.0
    alpha[2, IDENTITY] = 0.5
    alpha[3, 0] = 4.0
    alpha[4, 2] = 3.0
    assert derive_cell(alpha, 2) == [1, 3, 0, 1, 1, 0, 2, 2]
    tokens = derive_tokens({"normal": alpha, "reduction": alpha}, 2)
    make_space("enas-micro", {"nodes": 2}).validate_tokens(tokens)
    alpha[3, IDENTITY] = 8.0
    alpha[4, IDENTITY] = 8.0
    assert skip_edges(derive_cell(alpha, 2)) == 2


# --- the unrolled gradient -------------------------------------------------------------------------
def test_second_order_gradient_matches_the_exact_unrolled_hypergradient() -> None:
    """The finite-difference Hessian-vector product against autograd's exact second derivative.

    In float64 with a tiny epsilon, so w +- eps*v stays on one linear piece of the ReLU and
    max-pool network; the paper's 0.01 trades that exactness for robustness to float32 noise.
    """
    torch.manual_seed(0)
    model = DartsSupernet(nodes=2, input_shape=(1, 8, 8), num_classes=3, filters=2,
                          cells_per_stage=1, stem_multiplier=1).double()
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
    training = TrainingSpec(labelSmoothing=0.0)
    opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    bilevel = Bilevel(model, opt, DartsSpec(order="second", unrollEpsilon=1e-7), training, Collective())
    train = (torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))
    val = (torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([2, 1, 0, 2, 1, 0]))

    got = bilevel._unrolled_gradients(train, val, None)

    weights, alphas = model.weights(), model.arch_parameters()
    saved = [w.detach().clone() for w in weights]
    loss, _ = classification_loss(model(train[0]), train[1], training)
    g = torch.autograd.grad(loss, weights, create_graph=True)
    unrolled = [w - 0.1 * (gi + 3e-4 * w) for w, gi in zip(weights, g, strict=True)]
    # L_val at the unrolled weights, as a function of alpha through both paths
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if any(p is w for w in weights)]
    swapped = {**params, **dict(zip(names, unrolled, strict=True))}
    val_loss, _ = classification_loss(torch.func.functional_call(model, swapped, (val[0],)), val[1], training)
    exact = torch.autograd.grad(val_loss, alphas)
    for w, s in zip(weights, saved, strict=True):
        assert torch.equal(w, s)  # the unrolled step left the weights as they were
    for a, b in zip(got, exact, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-7), (a - b).abs().max()
    first = torch.autograd.grad(
        classification_loss(model(val[0]), val[1], training)[0], alphas)
    assert not torch.allclose(first[0], exact[0], rtol=1e-3)  # the second-order term matters here


# --- whole searches ---------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["first", "second"])
def test_search_moves_alpha_and_derives_a_valid_cell(order: str) -> None:
    run = DartsSearch(make_ctx(darts_doc(order), StopRequest()))
    before = [a.detach().clone() for a in run.model.arch_parameters()]
    result = run.run()
    after = run.model.arch_parameters()
    for a, b in zip(before, after, strict=True):
        assert not torch.equal(a, b)
        assert (a - b).abs().max() > 1e-4  # Adam at 3e-4 for 4 steps moves each alpha ~1e-3
    space = make_space("enas-micro", {"nodes": 2})
    arch = result.architecture
    assert arch.space == "enas-micro" and space.decode(arch.tokens) == arch.genotype
    assert len(result.history) == 2
    for epoch in result.history:
        assert {"normal_skip_edges", "reduction_skip_edges", "val_accuracy", "alpha_entropy_normal"} <= set(epoch)
    assert result.history[-1]["normal_skip_edges"] == skip_edges(arch.tokens[:8])
    assert 0.0 <= result.metrics["supernet_val_accuracy"] <= 1.0


def test_skip_count_early_stop_ends_the_search_once_the_normal_cell_collapses() -> None:
    doc = darts_doc(darts={"order": "first", "earlyStop": "skip-count", "skipLimit": 2})
    doc["training"]["epochs"] = 3
    run = DartsSearch(make_ctx(doc, StopRequest()))
    with torch.no_grad():  # a collapsed start: skip dominates every normal edge
        run.model.alphas["normal"][:, IDENTITY] = 5.0
    result = run.run()
    assert len(result.history) == 1 and result.history[0]["early_stopped"] == 1.0
    assert result.history[0]["normal_skip_edges"] >= 2

    doc["darts"]["earlyStop"] = "off"
    run = DartsSearch(make_ctx(doc, StopRequest()))
    with torch.no_grad():
        run.model.alphas["normal"][:, IDENTITY] = 5.0
    assert len(run.run().history) == 3


# Polls per epoch: 2 steps + the epoch's end = 3.
@pytest.mark.parametrize("order", ["first", "second"])
def test_stop_mid_epoch_then_resume_equals_an_uninterrupted_search(tmp_path: Path, order: str) -> None:
    doc = darts_doc(order)
    doc["training"]["epochs"] = 3
    reference = DartsSearch(make_ctx(doc, StopAtPoll(None)))
    ref = reference.run()

    doc["checkpointDir"] = str(tmp_path)
    with pytest.raises(Interrupted) as stopped:
        DartsSearch(make_ctx(doc, StopAtPoll(4))).run()
    assert stopped.value.progress.epoch == 1 and stopped.value.progress.step == 1
    resumed = DartsSearch(make_ctx(doc, StopAtPoll(None)))
    got = resumed.run()
    assert without_timing(got.history) == without_timing(ref.history)
    assert got.architecture == ref.architecture
    ref_state, state = reference.model.state_dict(), resumed.model.state_dict()
    assert ref_state.keys() == state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], state[key]), key  # bit-exact weights and alpha


def test_sigterm_on_a_real_darts_process_checkpoints_and_a_rerun_finishes(tmp_path: Path) -> None:
    doc = darts_doc("first", checkpointDir=str(tmp_path / "ckpt"))
    doc["training"]["epochs"] = 3
    doc["dataset"]["maxTrainExamples"] = 128
    run = preempt_and_rerun(doc, tmp_path)
    assert len(run.final["epochs"]) == 3
    assert make_space("enas-micro", {"nodes": 2}).decode(run.final["architecture"]["tokens"])

    # the same search without the interruption ends on the same alpha and weights
    state = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=False)["objects"]["supernet"]
    del doc["checkpointDir"]
    reference = DartsSearch(make_ctx(doc, StopRequest()))
    reference.run()
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spaceType": "nasnet"}, "mode 'darts' searches the enas-micro cell"),
        ({"spaceOptions": {"nodes": 0}}, "spaceOptions:"),
        ({"darts": {"accumulate": 3}}, "training.batchSize 16 must be a multiple of workers x darts.accumulate = 3"),
        ({"dataset": {"name": "digits", "maxTrainExamples": 32, "validationSize": 8}},
         "training.batchSize 16 exceeds"),
    ],
)
def test_bad_darts_settings_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DartsSearch(make_ctx(darts_doc(**change), StopRequest()))
