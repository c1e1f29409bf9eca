"""The status API over real HTTP on 127.0.0.1: every response code, idempotent repeats,
metrics of each result, and a fuzz of bodies and headers (never a 5xx, never a change)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_operator.metrics import OperatorMetrics
from nas_operator.status_api import MAX_BODY, SearchRegistry, StatusServer, create_app
from nas_operator.testing import SimulatedOutcome
from tests.support.loop_harness import Harness, make_search, wait_until

NS, SEARCH = "ns", "s"


class Served:
    def __init__(self, harness: Harness, server: StatusServer, metrics: OperatorMetrics,
                 session: aiohttp.ClientSession):
        self.h, self.server, self.metrics, self.session = harness, server, metrics, session

    def url(self, trial: str = "s-t0000", search: str = SEARCH, ns: str = NS) -> str:
        return f"{self.server.url}/v1/namespaces/{ns}/searches/{search}/trials/{trial}/reports"

    def auth(self, trial: str = "s-t0000") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.h.loop.token(trial)}"}

    async def post(self, body, headers=None, trial="s-t0000", **url):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with self.session.post(self.url(trial, **url), data=data,
                                     headers=self.auth(trial) if headers is None else headers) as r:
            return r.status, await r.json(content_type=None)

    def reports(self, result: str) -> float:
        return self.metrics.registry.get_sample_value(
            "kubenas_status_api_reports_total", {"result": result}) or 0.0


@pytest.fixture
async def served():
    metrics = OperatorMetrics()
    h = Harness(make_search(name=SEARCH, budget={"maxTrials": 2, "parallelism": 2},
                            trial={"retries": 0}),
                lambda req: SimulatedOutcome(hang=True),
                metrics=metrics.for_search(NS, SEARCH))
    registry = SearchRegistry()
    registry.add(h.loop)
    server = StatusServer(create_app(registry, metrics))
    await server.start()
    await h.loop.start()
    await wait_until(lambda: h.launcher.running == 2)
    async with aiohttp.ClientSession() as session:
        yield Served(h, server, metrics, session)
    await h.close()
    await server.stop()


def epoch(n=0, acc=0.5, trial="s-t0000", attempt=0):
    return {"kind": "epoch", "trial": trial, "attempt": attempt, "epoch": n,
            "metrics": {"val_accuracy": acc}}


def final(acc=0.5, trial="s-t0000"):
    return {"kind": "final", "trial": trial, "attempt": 0, "metrics": {"val_accuracy": acc},
            "epochs": [{"val_accuracy": acc}]}


async def test_every_response_code(served):
    s = served
    other_token = {"Authorization": f"Bearer {s.h.loop.token('s-t0001')}"}
    table = [
        # (body, headers, url kwargs, status, result)
        (epoch(0), None, {}, 200, "accepted"),
        (epoch(0), None, {}, 200, "duplicate"),
        (epoch(1, 0.6), None, {}, 200, "accepted"),
        (epoch(0), {}, {}, 401, "unauthorized"),
        (epoch(0), {"Authorization": "Basic dXNlcjpwdw=="}, {}, 401, "unauthorized"),
        (epoch(0), {"Authorization": "Bearer "}, {}, 401, "unauthorized"),
        (epoch(0), other_token, {}, 403, "forbidden"),
        (epoch(0), {"Authorization": "Bearer 00"}, {}, 403, "forbidden"),
        (epoch(0), None, {"search": "nope"}, 404, "not_found"),
        (epoch(0), None, {"ns": "other"}, 404, "not_found"),
        (b"{not json", None, {}, 400, "bad_request"),
        (b"[1, 2]", None, {}, 400, "bad_request"),
        ({"trial": "s-t0000"}, None, {}, 400, "bad_request"),
        ({**epoch(0), "extra": 1}, None, {}, 400, "bad_request"),
        ({**epoch(0), "epoch": None}, None, {}, 400, "bad_request"),
        (b'{"kind": "epoch", "trial": "s-t0000", "epoch": 3, "metrics": {"val_accuracy": NaN}}',
         None, {}, 400, "bad_request"),
        (epoch(0, trial="s-t0001"), None, {}, 400, "bad_request"),
        (b"x" * (MAX_BODY + 1), None, {}, 400, "bad_request"),
        (epoch(0, attempt=3), None, {}, 409, "conflict"),
        (final(0.7), None, {}, 200, "accepted"),
        (final(0.7), None, {}, 200, "duplicate"),
        (epoch(1, 0.6), None, {}, 200, "duplicate"),
        (final(0.9), None, {}, 409, "conflict"),
        ({"kind": "failed", "trial": "s-t0000", "reason": "late"}, None, {}, 409, "conflict"),
    ]
    for i, (body, headers, url, status, result) in enumerate(table):
        got, answer = await s.post(body, headers, **url)
        assert (got, answer["result"]) == (status, result), (i, answer)
        assert answer["message"]
    unknown = "s-t0099"
    got, answer = await s.post(epoch(0, trial=unknown), trial=unknown)
    assert (got, answer["result"]) == (404, "not_found")
    assert s.h.loop.status().trials.succeeded == 1
    assert s.h.strategy is not None
    await wait_until(lambda: sum(s.h.strategy.told.values()) == 1)
    assert s.reports("accepted") == 3 and s.reports("duplicate") == 3
    assert s.reports("unauthorized") == 3 and s.reports("forbidden") == 2
    assert s.reports("not_found") == 3 and s.reports("bad_request") == 8
    assert s.reports("conflict") == 3


async def test_messages_name_the_problem(served):
    _, answer = await served.post({**epoch(0), "epoch": -1})
    assert "report.epoch" in answer["message"]
    _, answer = await served.post(b'{"kind": "final", "trial": "s-t0000", '
                                  b'"metrics": {"val_accuracy": Infinity}}')
    assert "val_accuracy" in answer["message"] and "finite" in answer["message"]
    _, answer = await served.post(b"x" * (MAX_BODY + 1))
    assert str(MAX_BODY) in answer["message"]


async def test_health_readiness_and_metrics(served):
    async with served.session.get(f"{served.server.url}/healthz") as r:
        assert r.status == 200
    async with served.session.get(f"{served.server.url}/readyz") as r:
        assert r.status == 200
    await served.post(final(0.8))
    async with served.session.get(f"{served.server.url}/metrics") as r:
        text = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert 'kubenas_searches{phase="Running"} 1.0' in text
    assert 'kubenas_best_reward{namespace="ns",search="s"}' in text
    assert 'kubenas_trials_total{namespace="ns",outcome="succeeded",search="s"} 1.0' in text


async def test_a_search_still_loading_answers_503_then_404():
    loading = {("ns", "later")}
    metrics = OperatorMetrics(process_collectors=False)
    server = StatusServer(create_app(SearchRegistry(), metrics,
                                     starting=lambda ns, name: (ns, name) in loading))
    await server.start()
    url = f"{server.url}/v1/namespaces/ns/searches/later/trials/later-t0000/reports"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=epoch(0, trial="later-t0000"),
                                    headers={"Authorization": "Bearer x"}) as r:
                assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
            loading.clear()
            async with session.post(url, json=epoch(0, trial="later-t0000"),
                                    headers={"Authorization": "Bearer x"}) as r:
                assert r.status == 404
    finally:
        await server.stop()
    assert metrics.registry.get_sample_value("kubenas_status_api_reports_total",
                                             {"result": "unavailable"}) == 1


async def test_not_ready_answers_503():
    server = StatusServer(create_app(SearchRegistry(), ready=lambda: False))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/readyz") as r:
                assert r.status == 503
    finally:
        await server.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=4),
    max_leaves=12,
)
report_like = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["epoch", "final", "interrupted", "failed", "bogus"]) | json_values,
        "trial": st.sampled_from(["s-t0000", "s-t0001", "x"]) | json_values,
        "attempt": st.integers(-2, 3) | json_values,
        "epoch": st.integers(-2, 5) | json_values,
        "metrics": st.dictionaries(st.text(max_size=8), st.floats()) | json_values,
        "epochs": st.lists(st.dictionaries(st.text(max_size=8), st.floats(), max_size=2),
                           max_size=3) | json_values,
        "reason": json_values,
    },
)
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | report_like.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(body=bodies, auth=st.sampled_from(["valid", "other", "none", "garbage"]),
       trial=st.sampled_from(["s-t0000", "s-t0001", "s-t0005", "zz"]))
async def test_fuzz_never_5xx_and_rejections_change_nothing(served, body, auth, trial):
    s = served
    headers = {
        "valid": s.auth(trial),
        "other": s.auth("s-t0001" if trial != "s-t0001" else "s-t0000"),
        "none": {},
        "garbage": {"Authorization": "Bearer \u00e9\u00e9"},
    }[auth]
    before = json.dumps(s.h.loop.ledger.to_state(), sort_keys=True)
    got, answer = await s.post(body, headers, trial=trial)
    assert got < 500, answer
    if got >= 400:
        assert json.dumps(s.h.loop.ledger.to_state(), sort_keys=True) == before


async def test_hostile_reports_are_refused_with_the_reason_and_change_nothing(served):
    """Bodies a broken or hostile trainer sends: each a 400 naming the problem, none of them
    turned into a reward (1e13 as an accuracy would overflow the controller's float32)."""
    s = served
    deep = (b'{"kind": "final", "trial": "s-t0000", "metrics": ' + b"[" * 30_000
            + b"]" * 30_000 + b"}")
    assert len(deep) < MAX_BODY
    table = [
        (deep, "nested too deeply"),
        (final(1e13), "metrics.val_accuracy: an accuracy must lie in [0, 1], got 1e+13"),
        (final(-5), "an accuracy must lie in [0, 1], got -5"),
        (final(1e300), "val_accuracy"),
        ({**final(), "epochs": [{"val_accuracy": 0.5}, {"val_accuracy": 2.0}]},
         "epochs[1].val_accuracy: an accuracy must lie in [0, 1]"),
        ({**final(), "metrics": {"val_accuracy": "0.5"}}, "valid number"),
        ({**final(), "metrics": {"val_accuracy": True}}, "valid number"),
        ({**final(), "metrics": {"params": 1e300}}, "params"),
        ({**final(), "metrics": {"val_perplexity": 0.5}}, "a perplexity is at least 1"),
        ({**epoch(0), "epoch": 10**15}, "epoch"),
        ({**epoch(0), "epoch": "3"}, "epoch"),
        ({**epoch(0), "attempt": True}, "attempt"),
    ]
    for i, (body, words) in enumerate(table):
        got, answer = await s.post(body)
        assert (got, answer["result"]) == (400, "bad_request"), (i, answer)
        assert words in answer["message"], (i, answer["message"])
    status = s.h.loop.status()
    assert status.trials.succeeded == 0 and status.trials.running == 2 and status.best is None
    got, answer = await s.post(final(0.7))  # the trial still takes its real report
    assert (got, answer["result"]) == (200, "accepted")
    assert s.h.loop.status().best.reward == pytest.approx(0.7**3)
