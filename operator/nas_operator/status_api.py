"""The status API: trainers POST their reports here; Prometheus scrapes ``/metrics``.

One aiohttp app serves every search of the process (a ``SearchRegistry`` of
loops keyed by namespace and name), in the same event loop as the loops, so a
report is applied without locks or threads.

``POST /v1/namespaces/{ns}/searches/{search}/trials/{trial}/reports`` with
``Authorization: Bearer <token>`` (the trial's HMAC token) answers:

* 200 ``accepted`` or ``duplicate`` (a repeated report changes nothing);
* 400 malformed JSON, a body that is not a ``Report``, over ``max_body`` bytes,
  or non-finite metrics, with a message naming the field;
* 401 no bearer token; 403 a token that is not this trial's;
* 404 unknown search or trial; 409 the trial or attempt already ended;
* 503 (with Retry-After) for a search this process is still loading, e.g. right after
  an operator restart (``starting``): the trainer retries instead of giving up.

Bad input never produces a 5xx and never changes a search.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

from aiohttp import web
from pydantic import ValidationError

from controller_policy.contract import Report
from controller_policy.strict import format_validation_error
from nas_operator.launcher import REPORT_PATH
from nas_operator.loop import ReportOutcome, SearchLoop
from nas_operator.metrics import OperatorMetrics
from nas_operator.tokens import check_token

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
STATUS_CODES = {
    ReportOutcome.ACCEPTED: 200,
    ReportOutcome.DUPLICATE: 200,
    ReportOutcome.BAD_REQUEST: 400,
    ReportOutcome.NOT_FOUND: 404,
    ReportOutcome.CONFLICT: 409,
}


class SearchRegistry:
    """The live search loops of this process, by (namespace, name)."""

    def __init__(self) -> None:
        self._loops: dict[tuple[str, str], SearchLoop] = {}

    def add(self, loop: SearchLoop) -> None:
        self._loops[(loop.namespace, loop.name)] = loop

    def remove(self, namespace: str, name: str) -> SearchLoop | None:
        return self._loops.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> SearchLoop | None:
        return self._loops.get((namespace, name))

    def __iter__(self) -> Iterator[SearchLoop]:
        return iter(list(self._loops.values()))

    def __len__(self) -> int:
        return len(self._loops)


def _answer(status: int, result: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"result": result, "message": message}, status=status,
                             headers=headers or None)  # fmt: skip


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _describe(exc: ValidationError) -> str:
    return "; ".join(format_validation_error(exc, "report", absolute=())[:5])


def create_app(
    registry: SearchRegistry,
    metrics: OperatorMetrics | None = None,
    *,
    max_body: int = MAX_BODY,
    ready: Callable[[], bool] | None = None,
    starting: Callable[[str, str], bool] | None = None,
) -> web.Application:
    """The aiohttp application (reports, /metrics, /healthz, /readyz).

    ``starting(namespace, search)`` says whether a search not served yet may still
    appear (its operator is starting it): its reports get 503, which trainers retry,
    instead of a final 404.
    """

    def count(result: str) -> None:
        if metrics is not None:
            metrics.report(result)

    async def post_report(request: web.Request) -> web.Response:
        ns = request.match_info["namespace"]
        name = request.match_info["search"]
        trial = request.match_info["trial"]
        token = _bearer(request)
        if token is None:
            count("unauthorized")
            return _answer(401, "unauthorized", "send 'Authorization: Bearer <trial token>'",
                           **{"WWW-Authenticate": 'Bearer realm="kubenas"'})
        loop = registry.get(ns, name)
        if loop is None and starting is not None and starting(ns, name):
            count("unavailable")
            return _answer(503, "unavailable", f"search {ns}/{name} is starting; retry",
                           **{"Retry-After": "2"})
        if loop is None:
            count("not_found")
            return _answer(404, "not_found", f"search {ns}/{name} is not served here")
        if not check_token(loop.key, ns, name, trial, token):
            count("forbidden")
            return _answer(403, "forbidden", f"the token is not the token of trial {trial}")
        if request.content_length is not None and request.content_length > max_body:
            count("bad_request")
            return _answer(400, "bad_request", f"body exceeds {max_body} bytes")
        body = await _read_limited(request, max_body)
        if body is None:
            count("bad_request")
            return _answer(400, "bad_request", f"body exceeds {max_body} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            count("bad_request")
            return _answer(400, "bad_request", f"body is not JSON: {exc}")
        except RecursionError:  # arrays/objects nested thousands deep, under max_body bytes
            count("bad_request")
            return _answer(400, "bad_request", "body is nested too deeply to be a Report")
        if not isinstance(data, dict):
            count("bad_request")
            return _answer(400, "bad_request", "body must be a JSON object (a Report)")
        try:
            report = Report.model_validate(data)
        except ValidationError as exc:
            count("bad_request")
            return _answer(400, "bad_request", _describe(exc))
        result = loop.handle_report(trial, report)
        count(result.outcome.value)
        return _answer(STATUS_CODES[result.outcome], result.outcome.value, result.message)

    async def get_metrics(_: web.Request) -> web.Response:
        if metrics is None:
            return _answer(404, "not_found", "metrics are not enabled")
        metrics.set_search_phases(loop.phase for loop in registry)
        body, content_type = metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready is not None and not ready():
            return web.Response(status=503, text="not ready")
        return web.Response(text="ready")

    app = web.Application(client_max_size=max_body)
    app.router.add_post(REPORT_PATH, post_report)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes (chunked bodies have no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class StatusServer:
    """Runs the app on a host and port (port 0: any free port; see ``url``)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
