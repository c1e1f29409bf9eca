"""The chart's alerts, checked and unit-tested by the real promtool.

The PrometheusRule is rendered by the real helm (tests/helm_values/monitoring.yaml), its
groups checked with `promtool check rules`, and `promtool test rules` plays the input series
of tests/monitoring/prometheus/alerts.test.yaml through them: each alert must fire where the file says
and stay quiet where it says. An alert without both a firing and a quiet case fails here.
See docs/monitoring.md.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support.prometheus import REPO, binary, rendered_rule_groups

UNIT_TESTS = REPO / "tests" / "monitoring" / "prometheus" / "alerts.test.yaml"
VALUES = "monitoring.yaml"


def _write_rules(folder: Path, groups: list[dict]) -> Path:
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return rules


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _alerts(groups: list[dict]) -> set[str]:
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    for values in ((VALUES,), ()):  # with the ServiceMonitor (4 alerts) and without (3)
        groups = rendered_rule_groups(*values)
        rules = _write_rules(tmp_path, groups)
        proc = _promtool("check", "rules", str(rules), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"SUCCESS: {len(_alerts(groups))} rules found" in proc.stdout, proc.stdout
    assert _alerts(rendered_rule_groups(VALUES)) - _alerts(groups) == {"KubenasOperatorDown"}


def test_every_alert_fires_and_stays_quiet_as_the_unit_tests_say(tmp_path: Path) -> None:
    _write_rules(tmp_path, rendered_rule_groups(VALUES))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    proc = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = _alerts(rendered_rule_groups(VALUES))
    assert not alerts - fires, f"alerts never shown firing in {UNIT_TESTS.name}: {alerts - fires}"
    assert not alerts - quiet, f"alerts never shown quiet in {UNIT_TESTS.name}: {alerts - quiet}"
    assert not (fires | quiet) - alerts, f"unit tests of no alert: {(fires | quiet) - alerts}"


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: claim that the stalled search stays quiet, promtool objects."""
    _write_rules(tmp_path, rendered_rule_groups(VALUES))
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    stalled = next(c for t in doc["tests"] for c in t["alert_rule_test"]
                   if c["alertname"] == "KubenasSearchStalled" and c["exp_alerts"])
    stalled["exp_alerts"] = []
    (tmp_path / "wrong.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = _promtool("test", "rules", "wrong.test.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "KubenasSearchStalled" in proc.stdout + proc.stderr
