"""Operator settings: the Helm chart passes them as environment variables, flags override.

Kept in one frozen dataclass so the handlers, the launcher and the tests all
read the same values, and a test can build one without touching ``os.environ``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

ENV_PREFIX = "KUBENAS_"


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator needs to know about its environment."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: the whole cluster."""
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    report_url_base: str | None = None
    """Base URL trial pods POST reports to (the chart's Service); None: the bound address."""
    trainer_image: str | None = None
    """Image of trials whose spec names none (None: the spec's default)."""
    trainer_image_pull_policy: str | None = None
    trainer_image_pull_secrets: tuple[str, ...] = ()
    trainer_service_account: str | None = None
    log_level: str = "INFO"
    namespace: str | None = None
    """The operator's own namespace (Events it reports about itself)."""
    pod_name: str | None = None
    status_interval: float = 1.0
    """Seconds between NASSearch status writes while a search is busy (final state: at once)."""
    write_concurrency: int = 32
    """API writes one search keeps in flight at most (NASTrial statuses, Jobs)."""
    retention_batch: int = 50
    """NASTrials past ``spec.retention`` that are deleted together while a search runs (each
    once a checkpoint the loop saved holds it); once it ends, the rest go at once."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read ``KUBENAS_*`` variables (the chart's Deployment sets them all)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        port = get("HTTP_PORT")
        try:
            http_port = int(port) if port else 8080
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}HTTP_PORT: {port!r} is not a port number") from None
        return cls(
            namespaces=_split(get("WATCH_NAMESPACES")),
            http_port=http_port,
            report_url_base=get("REPORT_URL_BASE"),
            trainer_image=get("TRAINER_IMAGE"),
            trainer_image_pull_policy=get("TRAINER_IMAGE_PULL_POLICY"),
            trainer_image_pull_secrets=_split(get("TRAINER_IMAGE_PULL_SECRETS")),
            trainer_service_account=get("TRAINER_SERVICE_ACCOUNT"),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            namespace=get("NAMESPACE"),
            pod_name=get("POD_NAME"),
        )

    def with_args(self, argv: Sequence[str]) -> OperatorConfig:
        """Command-line flags (``kubenas operator --namespace a --port 9000``) over the env."""
        parser = argparse.ArgumentParser(prog="kubenas operator",
                                         description="Run the kubenas operator (kopf).")
        parser.add_argument("--namespace", "-n", action="append", default=None,
                            help="namespace to watch (repeatable); default: "
                                 "$KUBENAS_WATCH_NAMESPACES, else all")
        parser.add_argument("--port", type=int, default=None, help="status API / metrics port")
        parser.add_argument("--host", default=None, help="status API bind address")
        parser.add_argument("--report-url-base", default=None,
                            help="URL trial pods reach the status API at")
        parser.add_argument("--trainer-image", default=None, help="default trainer image")
        parser.add_argument("--log-level", default=None,
                            choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        args = parser.parse_args(list(argv))
        changes: dict[str, object] = {}
        if args.namespace:
            changes["namespaces"] = tuple(n for item in args.namespace for n in _split(item))
        for flag, fld in (("port", "http_port"), ("host", "http_host"),
                          ("report_url_base", "report_url_base"),
                          ("trainer_image", "trainer_image"), ("log_level", "log_level")):
            value = getattr(args, flag)
            if value is not None:
                changes[fld] = value
        return dataclasses.replace(self, **changes)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelName(self.log_level) if self.log_level in (
            "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else logging.INFO
