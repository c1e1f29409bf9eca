"""`spec.earlyStopping` in a NASSearch: bad settings are refused naming the field and the fix."""

import pytest

from nas_operator.api import SpecError, parse_spec

BASE = {"searchSpace": {"type": "enas-macro", "options": {"layers": 4}},
        "strategy": {"type": "random"}, "trial": {"training": {"epochs": 4}}}


def spec(early, **parts):
    return parse_spec({**BASE, **parts, "earlyStopping": early})


def test_a_good_spec_keeps_its_settings():
    es = spec({"type": "successive-halving", "brackets": 2, "reductionFactor": 2}).earlyStopping
    assert (es.type, es.minEpochs, es.brackets, es.stoppedReward) == (
        "successive-halving", 1, 2, "partial")


@pytest.mark.parametrize(("early", "parts", "words"), [
    ({"type": "median", "minEpochs": 4}, {}, "spec.earlyStopping.minEpochs (4) must be below"),
    ({"type": "successive-halving", "brackets": 3}, {},
     "spec.earlyStopping.brackets (3): bracket 2 would start at epoch 9"),
    ({"type": "median"}, {"strategy": {"type": "enas"}, "searchSpace": {"type": "enas-micro"},
                          "budget": {"maxTrials": 1}}, "spec.earlyStopping: strategy.type 'enas'"),
    ({"type": "median", "minTrial": 2}, {}, "spec.earlyStopping.minTrial"),
    ({"type": "asha"}, {}, "spec.earlyStopping.type"),
])  # fmt: skip
def test_bad_settings_are_refused_naming_the_field(early, parts, words):
    with pytest.raises(SpecError) as info:
        spec(early, **parts)
    assert words in str(info.value)
