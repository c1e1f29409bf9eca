"""Every image space's child fits the data it is given: channels, size and class count come from
the dataset (here an .npz of 13x13 RGB images in 3 classes and an IDX set of 7x7 greys in 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from controller_policy.contract import TrialDocument
from controller_policy.spaces import make_space
from nas_trainer.child import build_child

IMAGE_SPACES = {
    "nasnet": {"blocks": 2},
    "enas-micro": {"nodes": 2},
    "enas-macro": {"layers": 4},
    "zoph-le-cnn": {"layers": 3, "filterChoices": [4, 8]},
}
MODEL = {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1, "auxiliaryHead": True}


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("arrays") / "rgb.npz"
    rng = np.random.default_rng(0)
    np.savez(file, x_train=rng.integers(0, 256, (24, 13, 13, 3), dtype=np.uint8),
             y_train=np.arange(24) % 3)
    return file


@pytest.mark.parametrize("space_type", sorted(IMAGE_SPACES))
@pytest.mark.parametrize("shape", ["rgb13", "grey7"])
def test_children_adapt_to_the_input(space_type: str, shape: str, npz: Path, tmp_path: Path) -> None:
    options = IMAGE_SPACES[space_type]
    space = make_space(space_type, options)
    if shape == "rgb13":
        dataset, expect = {"name": "arrays", "path": str(npz)}, ((3, 13, 13), 3)
    else:
        np.savez(tmp_path / "g.npz", x_train=np.zeros((12, 7, 7), np.uint8), y_train=np.arange(12) % 6)
        dataset, expect = {"name": "arrays", "path": str(tmp_path / "g.npz")}, ((1, 7, 7), 6)
    doc = TrialDocument.model_validate({
        "search": "s", "trial": "t", "architecture": space.architecture(space.sample(4)).model_dump(),
        "spaceOptions": options, "dataset": {**dataset, "validationSize": 2},
        "training": {"model": MODEL},
    })
    model, data = build_child(doc)
    assert (data.input_shape, data.num_classes) == expect
    model.eval()
    logits = model(data.normalize(data.train.images[:2]))
    assert logits.shape == (2, expect[1]) and torch.isfinite(logits).all()
