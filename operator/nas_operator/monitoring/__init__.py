"""Monitoring as code: the Grafana dashboard generator, a loopback Prometheus for tests and
pictures, and the matplotlib rendering of the dashboard (docs/monitoring.md)."""
