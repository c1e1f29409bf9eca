"""Acceptance: a real child of every space learns on the bundled data, on CPU, in seconds.

Image children (small options of each CNN space) train on scikit-learn's digits
and must beat chance (10%) by a wide margin; recurrent children must lower
validation perplexity on the pydoc text epoch after epoch.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller_policy.contract import TrialDocument
from controller_policy.spaces import make_space
from controller_policy.spaces.zoph_le_rnn import NASCELL_TOKENS
from nas_trainer.checkpoint import StopRequest
from nas_trainer.child import build_child
from nas_trainer.epochs import TrainResult, TrialContext
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import setup_runtime
from nas_trainer.train_image import train_image
from nas_trainer.train_language import train_language

CELL_MODEL = {"filters": 8, "cellsPerStage": 1, "stemMultiplier": 1}
IMAGE_CHILDREN = {
    "nasnet": ({"blocks": 2}, CELL_MODEL),
    "enas-micro": ({"nodes": 2}, CELL_MODEL),
    "enas-macro": ({"layers": 4}, CELL_MODEL),
    "zoph-le-cnn": ({"layers": 4, "filterChoices": [8, 12, 16, 24]}, {}),
}


def run_trial(doc: dict[str, Any]) -> TrainResult:
    trial = TrialDocument.model_validate(doc)
    model, data = build_child(trial)
    ctx = TrialContext(trial, setup_runtime(trial.training),
                       Reporter(None, None, None, echo_stdout=False), StopRequest())
    if data.kind == "image":
        return train_image(ctx, model, data)
    return train_language(ctx, model, data)


@pytest.mark.parametrize("space_type", sorted(IMAGE_CHILDREN))
def test_image_child_beats_chance_on_digits(space_type: str) -> None:
    options, model = IMAGE_CHILDREN[space_type]
    space = make_space(space_type, options)
    result = run_trial({
        "search": "accept", "trial": space_type, "seed": 1,
        "architecture": space.architecture(space.sample(1)).model_dump(),
        "spaceOptions": options,
        "dataset": {"name": "digits", "maxTrainExamples": 600},  # 300 validation images
        "training": {"epochs": 5, "batchSize": 32, "learningRate": 0.1, "threads": 1,
                     "model": model},
    })
    accuracies = [h["val_accuracy"] for h in result.history]
    assert len(accuracies) == 5
    assert result.metrics["val_accuracy"] >= 0.6, f"{space_type}: val accuracy per epoch {accuracies}"


@pytest.mark.parametrize("space_type", ["zoph-le-rnn", "enas-rnn"])
def test_recurrent_child_lowers_validation_perplexity_on_pydoc_text(space_type: str) -> None:
    options = {"nodes": 4} if space_type == "enas-rnn" else {}
    space = make_space(space_type, options)
    tokens = list(NASCELL_TOKENS) if space_type == "zoph-le-rnn" else space.sample(0)
    result = run_trial({
        "search": "accept", "trial": space_type, "seed": 1,
        "architecture": space.architecture(tokens).model_dump(),
        "spaceOptions": options,
        "dataset": {"name": "pydoc-text", "maxTrainExamples": 6000, "validationSize": 1000},
        "objective": {"metric": "val_perplexity", "reward": "inverse-square"},
        "training": {"epochs": 3, "batchSize": 20, "bptt": 15, "learningRate": 10.0,
                     "momentum": 0.0, "nesterov": False, "schedule": "constant",
                     "weightDecay": 0.0, "threads": 1,
                     "model": {"embeddingSize": 32, "hiddenSize": 32}},
    })
    ppl = [h["val_perplexity"] for h in result.history]
    assert ppl[0] > ppl[1] > ppl[2], f"{space_type}: val perplexity per epoch {ppl}"
    assert ppl[2] < 0.2 * 2426, "far below a uniform guess over the vocabulary"
    assert result.metrics["best_val_perplexity"] == ppl[2]
