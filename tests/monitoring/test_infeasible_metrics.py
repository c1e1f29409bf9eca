"""``kubenas_trials_infeasible_total``: every proposal objective.constraints refused, by the
limit it broke, equal to the search's own count; and the label set stays closed."""

from __future__ import annotations

import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller_policy.contract import DatasetSpec, ModelSpec
from controller_policy.objective import Constraints
from nas_operator.loop.limits import limit_label
from nas_operator.metrics import INFEASIBLE_LIMITS, OperatorMetrics
from nas_operator.testing import constant_behaviour
from nas_trainer.measure import Counter
from tests.support.loop_harness import Harness, make_search

MODEL = {"cellsPerStage": 1, "filters": 8}
OPTIONS = {"layers": 2}


def by_limit(metrics: OperatorMetrics) -> dict[str, float]:
    body, _ = metrics.exposition()
    [family] = [f for f in text_string_to_metric_families(body.decode())
                if f.name == "kubenas_trials_infeasible"]
    return {s.labels["limit"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_a_refused_proposal_is_labelled_by_what_it_broke() -> None:
    c = Constraints(maxParams=100, maxFlops=1000)
    assert limit_label(c.broken(101, 1000)) == "maxParams"
    assert limit_label(c.broken(100, 1001)) == "maxFlops"
    assert limit_label(c.broken(101, 1001)) == "both"
    assert c.broken(100, 1000) == [] and limit_label([]) == "uncountable"
    metrics = OperatorMetrics(process_collectors=False)
    search = metrics.for_search("ns", "s")
    assert by_limit(metrics) == dict.fromkeys(INFEASIBLE_LIMITS, 0.0)  # zero from the start
    with pytest.raises(ValueError, match="unknown limit 'maxLatency'"):
        search.trial_infeasible("maxLatency")
    metrics.forget("ns", "s")
    assert by_limit(metrics) == {}


async def test_the_counter_equals_the_searchs_infeasible_trials_by_limit() -> None:
    counter = Counter("enas-macro", OPTIONS, DatasetSpec(name="digits"), ModelSpec(**MODEL))
    rng = random.Random(0)
    figures = sorted({(f.params, f.macs) for f in (
        counter.count(counter.space.sample(rng)) for _ in range(60))})
    # limits in the middle of each figure's range: some proposals break one, some both
    params = sorted(p for p, _ in figures)[len(figures) // 2]
    macs = sorted(m for _, m in figures)[len(figures) // 2]
    limits = Constraints(maxParams=params, maxFlops=macs)
    metrics = OperatorMetrics(process_collectors=False)
    search = make_search(
        searchSpace={"type": "enas-macro", "options": OPTIONS},
        budget={"maxTrials": 30, "parallelism": 3},
        objective={"constraints": {"maxParams": params, "maxFlops": macs}},
        trial={"dataset": {"name": "digits"}, "training": {"model": MODEL}},
    )
    h = Harness(search, constant_behaviour(0.5), metrics=metrics.for_search("ns", "s"))
    try:
        status = await h.run(timeout=240)
    finally:
        await h.close()
    assert status.phase == "Succeeded", status.message
    got = by_limit(metrics)
    assert sum(got.values()) == status.trials.infeasible > 0
    # the same split, from the events: each names the limits it broke
    expected = dict.fromkeys(INFEASIBLE_LIMITS, 0.0)
    for event in h.reasons("TrialInfeasible"):
        broken = [name for name in ("maxParams", "maxFlops") if f"> {name}" in event.message]
        expected[limit_label(broken)] += 1
    assert got == expected
    assert got["maxParams"] + got["both"] > 0 and got["maxFlops"] + got["both"] > 0
    assert limits.over(params, macs) is None  # the limits themselves are within (inclusive)
