"""detector.slo: the spec models, their errors (file:line), and the rules generated."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector import slo
from detector.__main__ import main
from detector.errors import ConfigError

SPEC = """\
version: prometheus/v1
service: shop
labels:
  owner: team-a
slos:
  - name: requests-availability
    objective: 99.9
    description: requests answered without a 5xx
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{ .window }}]))
    alerting:
      name: ShopAvailabilityBudgetBurn
      labels:
        category: availability
      annotations:
        dashboard: https://grafana.example.com/d/slo
      page_alert:
        labels:
          team: oncall
      ticket_alert:
        annotations:
          summary: custom ticket summary
"""
IDS = {
    "sloth_id": "shop-requests-availability",
    "sloth_service": "shop",
    "sloth_slo": "requests-availability",
}
SELECT = (
    '{sloth_id="shop-requests-availability", sloth_service="shop", '
    'sloth_slo="requests-availability"}'
)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_spec(tmp_path: Path, text: str = SPEC) -> slo.SLOSpec:
    (spec,) = slo.load_specs([write(tmp_path, text)])
    return spec


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        slo.load_specs([path])
    return [line.replace(str(path), "spec.yaml") for line in str(info.value).splitlines()]


def rules_of(spec: slo.SLOSpec) -> list[dict[str, Any]]:
    (group,) = slo.generate(spec)["groups"]
    assert group["name"] == "slo-shop-requests-availability"
    rules: list[dict[str, Any]] = group["rules"]
    return rules


# --- models and errors -----------------------------------------------------------------


def test_a_valid_spec_loads(tmp_path: Path) -> None:
    spec = one_spec(tmp_path)
    assert spec.service == "shop" and spec.labels == {"owner": "team-a"}
    (objective,) = spec.slos
    assert objective.objective == 99.9
    assert objective.alerting.page_alert.labels == {"team": "oncall"}
    assert objective.alerting.ticket_alert.disable is False


def test_models_are_frozen(tmp_path: Path) -> None:
    spec = one_spec(tmp_path)
    with pytest.raises(ValueError, match="frozen"):
        spec.service = "other"  # type: ignore[misc]  # the point of the test


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "version: prometheus/v1",
            "version: sloth/v1",
            "spec.yaml:1: version: Input should be 'prometheus/v1'",
        ),
        (
            "[{{.window}}]))\n        total",
            "[5m]))\n        total",
            "spec.yaml:11: slos[0].sli.events.error_query: the query must contain "
            "{{.window}} (e.g. [{{.window}}]): each recording rule puts its window there",
        ),
        (
            "[{{ .window }}]))",
            "[{{ .window }}])) / {{.service}}",
            "spec.yaml:12: slos[0].sli.events.total_query: {{.window}} is the only "
            "template a query may contain",
        ),
        (
            "objective: 99.9",
            "objective: 100",
            "spec.yaml:7: slos[0].objective: Input should be less than 100",
        ),
        (
            "objective: 99.9",
            "objective: 0",
            "spec.yaml:7: slos[0].objective: Input should be greater than 0",
        ),
        (
            "    sli:\n      events:",
            "    sli:\n      raw: {}\n      events:",
            "spec.yaml:10: slos[0].sli.raw: Extra inputs are not permitted",
        ),
        (
            "  owner: team-a",
            "  sloth_id: mine",
            "spec.yaml:3: labels: label 'sloth_id' is set by the generator",
        ),
        (
            "        category: availability",
            "        bad-name: x",
            "spec.yaml:15: slos[0].alerting.labels: 'bad-name' is not a Prometheus label name",
        ),
        (
            "          team: oncall",
            "          severity: page",
            "spec.yaml:20: slos[0].alerting.page_alert.labels: severity 'page': "
            "expected critical, warning or info (deploy/config/alertmanager.yml routes on it)",
        ),
        (
            "name: ShopAvailabilityBudgetBurn",
            "name: Shop-Burn",
            "spec.yaml:14: slos[0].alerting.name: String should match pattern "
            "'^[A-Za-z_][A-Za-z0-9_]*$'",
        ),
    ],
)
def test_spec_errors_name_file_line_and_path(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in SPEC
    assert problems(tmp_path, SPEC.replace(old, new, 1)) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SPEC.replace("objective: 99.9", "objective: 120").replace("service: shop", "service: ''")
    assert problems(tmp_path, text) == [
        "spec.yaml:2: service: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
        "spec.yaml:7: slos[0].objective: Input should be less than 100",
    ]


def test_a_spec_without_slos(tmp_path: Path) -> None:
    assert problems(tmp_path, "version: prometheus/v1\nservice: shop\nslos: []\n") == [
        "spec.yaml:3: slos: a spec needs at least one SLO"
    ]


def test_slo_names_are_unique_in_a_service(tmp_path: Path) -> None:
    doc = yaml.safe_load(SPEC)
    doc["slos"].append({**doc["slos"][0], "alerting": {"name": "Other"}})
    assert problems(tmp_path, yaml.safe_dump(doc, sort_keys=False)) == [
        "spec.yaml:5: slos: SLO names must be unique in a service: requests-availability"
    ]


def test_ids_and_alert_names_are_unique_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, SPEC, "a.yaml")
    second = write(tmp_path, SPEC, "b.yaml")
    with pytest.raises(ConfigError) as info:
        slo.load_specs([first, second])
    assert str(info.value).splitlines() == [
        f"{second}:6: slos[0].name: SLO shop-requests-availability is also defined at "
        f"{first}:6: slos[0].name",
        f"{second}:14: slos[0].alerting.name: alert ShopAvailabilityBudgetBurn is also "
        f"defined at {first}:14: slos[0].alerting.name",
    ]


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    broken = write(tmp_path, "slos: [\n", "broken.yaml")
    with pytest.raises(ConfigError) as info:
        slo.load_specs([missing, broken])
    first, second = str(info.value).splitlines()
    assert first.startswith(f"{missing}:1: (root): cannot read file:")
    assert second.startswith(f"{broken}:2: (root): invalid YAML:")


# --- generation ------------------------------------------------------------------------


def test_objective_and_budget_are_exact_decimals() -> None:
    assert slo.ratio(99.9) == Decimal("0.999")
    assert slo.number(1 - slo.ratio(99.9)) == "0.001"
    assert slo.number(1 - slo.ratio(99.95)) == "0.0005"
    assert slo.number(1 - slo.ratio(95)) == "0.05"
    assert slo.number(Decimal("14.4")) == "14.4" and slo.number(Decimal("6")) == "6"


def test_burn_rate_windows_are_the_sre_workbook_ones() -> None:
    assert slo.BURN_WINDOWS == {
        "page": (
            slo.BurnWindow("1h", "5m", Decimal("14.4")),
            slo.BurnWindow("6h", "30m", Decimal("6")),
        ),
        "ticket": (
            slo.BurnWindow("1d", "2h", Decimal("3")),
            slo.BurnWindow("3d", "6h", Decimal("1")),
        ),
    }
    # each factor spends the stated share of a 30-day budget in its long window
    hours = {"1h": 1, "6h": 6, "1d": 24, "3d": 72}
    spent = [
        pair.factor * hours[pair.long] / (30 * 24)
        for pairs in slo.BURN_WINDOWS.values()
        for pair in pairs
    ]
    assert spent == [Decimal("0.02"), Decimal("0.05"), Decimal("0.1"), Decimal("0.1")]


def test_sli_recording_rules(tmp_path: Path) -> None:
    rules = rules_of(one_spec(tmp_path))
    sli = [r for r in rules if str(r.get("record", "")).startswith("slo:sli_error")]
    assert [r["record"] for r in sli] == [
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    ]
    assert sli[0] == {
        "record": "slo:sli_error:ratio_rate5m",
        "expr": '(sum(rate(http_requests_total{code=~"5.."}[5m])))\n/\n'
        "(sum(rate(http_requests_total[5m])))\n",
        "labels": {"owner": "team-a", **IDS, "sloth_window": "5m"},
    }
    assert "[30d]" in str(sli[-1]["expr"]) and "{{" not in str(sli[-1]["expr"])


def test_meta_recording_rules(tmp_path: Path) -> None:
    rules = rules_of(one_spec(tmp_path))
    labels = {"owner": "team-a", **IDS}
    on = "on (sloth_id, sloth_slo, sloth_service) group_left"
    assert [r for r in rules if "record" in r][8:] == [
        {"record": "slo:objective:ratio", "expr": "vector(0.999)", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": "vector(0.001)", "labels": labels},
        {"record": "slo:time_period:days", "expr": "vector(30)", "labels": labels},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate5m{SELECT}\n/ {on}\nslo:error_budget:ratio{SELECT}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate30d{SELECT}\n/ {on}\n"
            f"slo:error_budget:ratio{SELECT}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{SELECT}",
            "labels": labels,
        },
    ]


def test_the_recordings_come_before_the_alerts_that_read_them(tmp_path: Path) -> None:
    kinds = ["record" if "record" in r else "alert" for r in rules_of(one_spec(tmp_path))]
    assert kinds == ["record"] * 14 + ["alert"] * 2


def _pair(long: str, short: str, threshold: str) -> str:
    return (
        f"(\n  max(slo:sli_error:ratio_rate{long}{SELECT} > {threshold}) without "
        f"(sloth_window)\n  and\n  max(slo:sli_error:ratio_rate{short}{SELECT} > "
        f"{threshold}) without (sloth_window)\n)"
    )


def test_page_and_ticket_alerts(tmp_path: Path) -> None:
    page, ticket = (r for r in rules_of(one_spec(tmp_path)) if "alert" in r)
    assert page["alert"] == ticket["alert"] == "ShopAvailabilityBudgetBurn"
    assert page["expr"] == (
        _pair("1h", "5m", "(14.4 * 0.001)") + "\nor\n" + _pair("6h", "30m", "(6 * 0.001)") + "\n"
    )
    assert ticket["expr"] == (
        _pair("1d", "2h", "(3 * 0.001)") + "\nor\n" + _pair("3d", "6h", "(1 * 0.001)") + "\n"
    )
    assert page["labels"] == {
        "severity": "critical",
        "category": "availability",
        "team": "oncall",
        "sloth_severity": "page",
    }
    assert ticket["labels"] == {
        "severity": "warning",
        "category": "availability",
        "sloth_severity": "ticket",
    }
    assert "for" not in page  # the short window already filters blips
    assert page["annotations"] == {
        "summary": "shop is burning the error budget of its requests-availability SLO fast",
        "description": "SLO shop/requests-availability (requests answered without a 5xx) "
        "allows 0.1% of events to be bad over 30 days. {{ $value | "
        "humanizePercentage }} were bad over the last hour or six hours, more "
        "than the budget allows (14.4x over 1h and 5m, or 6x over 6h and "
        "30m): at this rate the budget is spent within days.",
        "runbook": "docs/runbooks/ShopAvailabilityBudgetBurn.md",
        "dashboard": "https://grafana.example.com/d/slo",
    }
    assert ticket["annotations"]["summary"] == "custom ticket summary"
    assert ticket["annotations"]["runbook"] == "docs/runbooks/ShopAvailabilityBudgetBurn.md"


def test_a_variant_can_be_disabled_and_severity_overridden(tmp_path: Path) -> None:
    text = SPEC.replace("      ticket_alert:\n", "      ticket_alert:\n        disable: true\n")
    text = text.replace("          team: oncall", "          severity: warning")
    (page,) = (r for r in rules_of(one_spec(tmp_path, text)) if "alert" in r)
    assert page["labels"] == {
        "severity": "warning",
        "category": "availability",
        "sloth_severity": "page",
    }


def test_render_is_yaml_of_every_spec_in_order(tmp_path: Path) -> None:
    first = one_spec(tmp_path)
    second = slo.load_specs(
        [
            write(
                tmp_path,
                SPEC.replace("service: shop", "service: cart").replace("ShopAvail", "CartAvail"),
                "b.yaml",
            )
        ]
    )[0]
    text = slo.render([first, second])
    assert text.startswith("# GENERATED by `vigil-detector slo generate`")
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == [
        "slo-shop-requests-availability",
        "slo-cart-requests-availability",
    ]
    assert doc == {"groups": slo.generate(first)["groups"] + slo.generate(second)["groups"]}
    assert "expr: |\n" in text  # expressions as literal blocks


# --- the command line ------------------------------------------------------------------


def test_cli_generate_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, SPEC)
    out = tmp_path / "slo.yaml"
    assert main(["slo", "generate", str(spec), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == slo.render(slo.load_specs([spec]))
    assert main(["slo", "generate", str(spec)]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert main(["slo", "check", str(spec)]) == 0
    assert capsys.readouterr().out == f"{spec}: ok\n"


def test_cli_reports_problems_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, SPEC.replace("objective: 99.9", "objective: 100"))
    out = tmp_path / "slo.yaml"
    assert main(["slo", "generate", str(spec), "--out", str(out)]) == 2
    assert not out.exists()
    assert capsys.readouterr().err == (
        f"vigil-detector: {spec}:7: slos[0].objective: Input should be less than 100\n"
    )
