"""Fixtures of the monitoring layer: ``scraped_search``, a real local search scraped by a real
Prometheus (module-scoped: the dashboard tests share one run)."""

from tests.support.prometheus import scraped_search  # noqa: F401
