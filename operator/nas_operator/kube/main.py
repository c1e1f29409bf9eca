"""``kubenas operator``: kopf and the status API in one event loop.

``main(argv)`` reads the chart's ``KUBENAS_*`` environment, lets flags
override it, logs in the way kopf does (in-cluster service account, else
kubeconfig), starts the status API (trainer reports, ``/metrics``,
``/healthz``, ``/readyz``) and runs kopf standalone until SIGTERM. ``run`` is
the same with injectable credentials and flags, for tests and embedding.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

import kopf

from nas_operator.kube.api import KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.handlers import build_registry
from nas_operator.kube.operator_state import OperatorRuntime, operator_settings
from nas_operator.process import tune_garbage_collector
from nas_operator.status_api import StatusServer, create_app

log = logging.getLogger("nas_operator")

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def login(settings: kopf.OperatorSettings | None = None, **_: Any) -> kopf.ConnectionInfo:
    """Credentials as kopf finds them: in-cluster service account first, then kubeconfig
    (kopf's helpers need its settings: the handler's, or defaults when called directly)."""
    logger = logging.getLogger("kopf.login")
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings, logger=logger) or (
        kopf.login_with_kubeconfig(settings=settings, logger=logger))
    if info is None:
        raise kopf.LoginError("no credentials: neither a service account nor a kubeconfig")
    return info


async def run(
    config: OperatorConfig,
    *,
    connection: kopf.ConnectionInfo | None = None,
    stop_flag: asyncio.Event | None = None,
    started: asyncio.Future[OperatorRuntime] | None = None,
) -> int:
    """Run until ``stop_flag`` (or a signal); ``started`` receives the runtime once serving."""
    info = connection if connection is not None else await asyncio.to_thread(login)
    in_cluster = connection is None and info.token is not None and os.path.exists(
        SERVICE_ACCOUNT_TOKEN)
    api = KubeApi.from_connection_info(info, token_file=SERVICE_ACCOUNT_TOKEN if in_cluster
                                       else None)
    runtime = OperatorRuntime(config, api)
    registry = build_registry(runtime)

    @kopf.on.login(registry=registry, id="login")
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return info if connection is not None else login()

    ready = asyncio.Event()
    app = create_app(runtime.searches, runtime.metrics,
                     ready=lambda: ready.is_set() and runtime.ready(),
                     starting=runtime.search_starting)
    server = StatusServer(app, config.http_host, config.http_port)
    url = await server.start()
    if runtime.report_url_base is None:
        runtime.report_url_base = url
        if config.http_host in ("0.0.0.0", "::"):
            log.warning("KUBENAS_REPORT_URL_BASE is not set: trial pods cannot reach %s; set it "
                        "to the operator Service's URL (the Helm chart does)", url)
    log.info("status API on %s; trial reports go to %s; watching %s", url,
             runtime.report_url_base, ", ".join(config.namespaces) or "all namespaces")
    if started is not None and not started.done():
        started.set_result(runtime)
    try:
        await kopf.operator(
            registry=registry, settings=operator_settings(config), standalone=True,
            clusterwide=not config.namespaces, namespaces=list(config.namespaces),
            stop_flag=stop_flag, ready_flag=ready,
        )
    finally:
        await server.stop()
        await runtime.events.flush(2.0)
        await api.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kubenas operator ARGS`` (the CLI passes its remaining arguments)."""
    try:
        config = OperatorConfig.from_env().with_args(list(argv or []))
    except ValueError as exc:
        print(f"kubenas operator: {exc}")
        return 2
    logging.basicConfig(level=config.log_level_number,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_garbage_collector()  # this process is the operator: its imports live as long as it
    try:
        return asyncio.run(run(config))
    except kopf.LoginError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
