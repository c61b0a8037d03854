"""The shipped SLOs: deploy/config/slos/*.yaml, the rule file generated from them
(deploy/config/rules/slo.yaml, checked in) and its promtool unit tests
(deploy/config/tests/slo_test.yaml), with the real promtool (Prometheus 2.42)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector import slo

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "deploy/config/slos").glob("*.yaml"))
RULES = ROOT / "deploy/config/rules/slo.yaml"
TESTS = ROOT / "deploy/config/tests/slo_test.yaml"
REGENERATE = (
    "vigil-detector slo generate deploy/config/slos/*.yaml --out deploy/config/rules/slo.yaml"
)
# where the metrics an SLI reads are defined
METRIC_SOURCES = [
    ROOT / "detector/metrics.py",
    ROOT / "remediator/metrics.py",
    ROOT / "deploy/local/shop.py",
]


def promtool(*argv: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        raise RuntimeError("promtool is not installed; `make test` installs it with apt-get")
    return subprocess.run([path, *argv], capture_output=True, text=True, timeout=120, check=False)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_the_specs_are_the_expected_slos() -> None:
    specs = slo.load_specs(SPECS)
    assert {slo.sloth_id(spec, s): s.objective for spec in specs for s in spec.slos} == {
        "vigil-ingest-availability": 99.9,
        "vigil-alert-delivery": 99.5,
        "vigil-remediation-success": 95.0,
        "demo-shop-availability": 99.0,
        "demo-shop-latency": 99.0,
    }


def test_the_generated_rules_are_up_to_date() -> None:
    assert RULES.read_text(encoding="utf-8") == slo.render(slo.load_specs(SPECS)), (
        f"deploy/config/rules/slo.yaml is stale: run {REGENERATE}"
    )


def test_the_slis_read_metrics_that_exist() -> None:
    """Every metric an SLI query names is one Vigil or the demo shop really exports."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in METRIC_SOURCES)
    for spec in slo.load_specs(SPECS):
        for s in spec.slos:
            for query in (s.sli.events.error_query, s.sli.events.total_query):
                for name in re.findall(r"\b([a-z_]+)(?:\{|\[)", query):
                    base = re.sub(r"_(total|count|bucket)$", "", name)
                    assert f'"{base}"' in sources, f"{s.name}: {name} is not exported"


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 80 rules found" in done.stdout  # 5 SLOs x (8 SLIs + 6 meta + 2 alerts)


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", str(TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_page_and_ticket_alert_has_a_firing_and_a_quiet_case() -> None:
    """The two variants of an SLO's alert share its name, so test_config.py's check by
    name alone would pass with the ticket tested and the page never: checked here per
    (alertname, sloth_severity). A case is quiet for a variant when its exp_alerts (every
    alert of that name firing then) leaves the variant out."""
    defined = {(r["alert"], r["labels"]["sloth_severity"]) for r in alert_rules()}
    assert len(defined) == 10
    fires: set[tuple[str, str]] = set()
    quiet: set[tuple[str, str]] = set()
    for case in yaml.safe_load(TESTS.read_text(encoding="utf-8"))["tests"]:
        for check in case.get("alert_rule_test") or []:
            name = check["alertname"]
            fired = {a["exp_labels"]["sloth_severity"] for a in check.get("exp_alerts") or []}
            fires |= {(name, v) for v in fired}
            quiet |= {(name, v) for v in ("page", "ticket") if v not in fired}
    assert defined - fires == set()
    assert defined - quiet == set()


@pytest.mark.parametrize(
    "rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['sloth_severity']}"
)
def test_page_is_critical_and_ticket_a_warning(rule: dict[str, Any]) -> None:
    variant = rule["labels"]["sloth_severity"]
    assert rule["labels"]["severity"] == {"page": "critical", "ticket": "warning"}[variant]
    assert rule["annotations"]["runbook"] == f"docs/runbooks/{rule['alert']}.md"
