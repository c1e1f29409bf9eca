"""``kubenas run``'s status API while its search loads: trainers that outlived a stopped
runner report into a resuming one, and must be told to retry (503), not that their search
does not exist (404, which the trainer's reporter treats as final)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from nas_operator.api import parse_search
from nas_operator.local.runner import local_app
from nas_operator.status_api import SearchRegistry, StatusServer

SEARCH = parse_search({"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
                       "metadata": {"name": "loading"},
                       "spec": {"searchSpace": {"type": "zoph-le-cnn"}}})


def post(url: str) -> tuple[int, dict[str, str], dict[str, object]]:
    body = json.dumps({"kind": "final", "trial": "loading-t0000", "attempt": 0,
                       "metrics": {"val_accuracy": 0.5}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": "Bearer any", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_reports_for_the_loading_search_get_503_with_retry_after_others_404() -> None:
    async def scenario() -> list[tuple[int, dict[str, str], dict[str, object]]]:
        server = StatusServer(local_app(SearchRegistry(), None, SEARCH))
        await server.start()
        try:
            base = f"{server.url}/v1/namespaces/default/searches"
            return await asyncio.gather(*(
                asyncio.to_thread(post, f"{base}/{name}/trials/{name}-t0000/reports")
                for name in ("loading", "another")))
        finally:
            await server.stop()

    (code, headers, body), (other, _, other_body) = asyncio.run(scenario())
    assert code == 503 and headers.get("Retry-After") == "2", (code, body)
    assert "starting; retry" in str(body)
    assert other == 404 and "not served here" in str(other_body)
