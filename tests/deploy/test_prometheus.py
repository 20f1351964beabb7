"""deploy/prometheus: the scrape config and alert rules pass `promtool check`, and the alert
rules' unit tests (alerts_test.yml) pass `promtool test rules`."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import DEPLOY, tool

PROMETHEUS = DEPLOY / "prometheus"
INSTALL = "make deploy-tools (Debian package prometheus)"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool", INSTALL), *args], capture_output=True, text=True,
                          timeout=120, cwd=PROMETHEUS)


def test_rules_and_config_check() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_and_the_issue_s_six_conditions_are_covered() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"
    for wanted in ("MediaproxyOriginErrors", "MediaproxyStoreErrors", "MediaproxyNotReady",
                   "MediaproxyCacheNearBudget", "MediaproxyPurgeNotApplied",
                   "MediaproxyHitRatioCollapse"):
        assert wanted in alerts
