"""SLO specs (a subset of Sloth's ``prometheus/v1`` format) and the Prometheus rules they make.

This module owns the SLO spec models, ``load_specs`` (YAML files -> specs, every problem as
``file:line: path: message``), the pure ``generate`` (one spec -> Prometheus rule groups) and
``render`` (specs -> the rule file's text). It must not read anything but the spec files,
and it must not talk to Prometheus: ``promtool`` checks and unit-tests what it writes
(tests/deploy/test_slo.py).

The output follows Sloth (https://sloth.dev) so its dashboards and habits carry over:

* ``slo:sli_error:ratio_rate<w>`` for w in 5m, 30m, 1h, 2h, 6h, 1d, 3d and the period 30d:
  ``(error_query) / (total_query)`` with ``{{.window}}`` replaced by ``w``; labelled
  ``sloth_id``, ``sloth_service``, ``sloth_slo``, ``sloth_window`` and the spec's labels.
  The 30d ratio is computed from the queries too (Sloth's unoptimised form), not averaged
  from the 5m ratios: SLIs with few events (remediation runs) have 5m windows without any,
  whose 0/0 would make an average of ratios NaN for a month.
* ``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:time_period:days``,
  ``slo:current_burn_rate:ratio`` (5m), ``slo:period_burn_rate:ratio`` (30d) and
  ``slo:period_error_budget_remaining:ratio``.
* one alert name per SLO with two rules, ``sloth_severity`` ``page`` (``severity:
  critical``) and ``ticket`` (``severity: warning``): the multi-window, multi-burn-rate
  alerts of the Google SRE workbook (chapter 5, "Alerting on SLOs"), for a 30-day window:

  ======  ============  ============  ===========  =====================================
  alert   long window   short window  burn rate    budget spent when it fires
  ======  ============  ============  ===========  =====================================
  page    1h            5m            14.4         2% in an hour
  page    6h            30m           6            5% in six hours
  ticket  1d            2h            3            10% in a day
  ticket  3d            6h            1            10% in three days
  ======  ============  ============  ===========  =====================================

  Both windows of a pair must be over the threshold: the long one says enough budget
  went, the short one that it is still going (so the alert resolves minutes after the
  burn stops, not hours).

The SLO period is fixed at 30 days (Sloth's default; its ``prometheus/v1`` format has no
field for it either). Of the spec, only ``sli.events`` is supported (not ``raw`` or
``plugin``), and annotations are Prometheus templates, not Sloth's Go templates of the spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from detector.errors import ConfigError
from servicekit import yamlsrc

PERIOD = "30d"
PERIOD_DAYS = 30
# the windows of slo:sli_error:ratio_rate<w>: every window an alert reads, then the period
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", PERIOD)
WINDOW_TEMPLATE = re.compile(r"\{\{\s*\.window\s*\}\}")
SEVERITIES = {"page": "critical", "ticket": "warning"}
# labels the generator sets itself
RESERVED_LABELS = frozenset(
    {"sloth_id", "sloth_service", "sloth_slo", "sloth_window", "sloth_severity"}
)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One pair of windows of a multi-window alert: both ratios over ``factor`` x budget."""

    long: str
    short: str
    factor: Decimal


BURN_WINDOWS: Mapping[str, tuple[BurnWindow, ...]] = {
    "page": (BurnWindow("1h", "5m", Decimal("14.4")), BurnWindow("6h", "30m", Decimal("6"))),
    "ticket": (BurnWindow("1d", "2h", Decimal("3")), BurnWindow("3d", "6h", Decimal("1"))),
}


# --- the spec ----------------------------------------------------------------------------


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a Prometheus label name")
        if name in RESERVED_LABELS:
            raise ValueError(f"label {name!r} is set by the generator")
    return labels


def _check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    for name in annotations:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid annotation name")
    return annotations


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(_check_annotations)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Events(_Model):
    """An SLI as the ratio of bad events to all events, each a PromQL query of a window."""

    error_query: str = Field(
        min_length=1,
        description="bad events over {{.window}}, e.g. "
        'sum(rate(x_total{code=~"5.."}[{{.window}}]))',
    )
    total_query: str = Field(min_length=1, description="all events over {{.window}}")

    @field_validator("error_query", "total_query")
    @classmethod
    def _has_window(cls, value: str) -> str:
        if not WINDOW_TEMPLATE.search(value):
            raise ValueError(
                "the query must contain {{.window}} (e.g. [{{.window}}]): each "
                "recording rule puts its window there"
            )
        if "{{" in WINDOW_TEMPLATE.sub("", value):
            raise ValueError("{{.window}} is the only template a query may contain")
        return value


class SLI(_Model):
    events: Events = Field(description="the only SLI kind supported (not raw or plugin)")


class AlertVariant(_Model):
    """The page or the ticket alert of an SLO."""

    disable: bool = Field(False, description="generate no rule for this variant")
    labels: Labels = Field(default_factory=dict, description="added to this variant's alert")
    annotations: Annotations = Field(
        default_factory=dict, description="added to (or replacing) the defaults"
    )

    @field_validator("labels")
    @classmethod
    def _severity_routes(cls, labels: dict[str, str]) -> dict[str, str]:
        severity = labels.get("severity")
        if severity is not None and severity not in ("critical", "warning", "info"):
            raise ValueError(
                f"severity {severity!r}: expected critical, warning or info "
                "(deploy/config/alertmanager.yml routes on it)"
            )
        return labels


class Alerting(_Model):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="alertname of both variants; its runbook is docs/runbooks/<name>.md",
    )
    labels: Labels = Field(default_factory=dict, description="added to both variants")
    annotations: Annotations = Field(default_factory=dict, description="added to both")
    page_alert: AlertVariant = AlertVariant()
    ticket_alert: AlertVariant = AlertVariant()


class SLO(_Model):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=128,
        description="unique in its service; sloth_slo",
    )
    objective: float = Field(
        gt=0.0, lt=100.0, description="percent of events that must be good over 30 days"
    )
    description: str = ""
    labels: Labels = Field(default_factory=dict, description="added to this SLO's rules")
    sli: SLI
    alerting: Alerting


class SLOSpec(_Model):
    """One file: a service and its SLOs (Sloth ``prometheus/v1``)."""

    version: Literal["prometheus/v1"]
    service: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
    labels: Labels = Field(default_factory=dict, description="added to every rule")
    slos: tuple[SLO, ...]

    @field_validator("slos")
    @classmethod
    def _unique_names(cls, slos: tuple[SLO, ...]) -> tuple[SLO, ...]:
        # not Field(min_length=1): pydantic reports a tuple whose items fail as empty too
        if not slos:
            raise ValueError("a spec needs at least one SLO")
        names = [s.name for s in slos]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"SLO names must be unique in a service: {', '.join(twice)}")
        return slos


def _where(source: str, data: Any, loc: yamlsrc.Loc, lines: dict[yamlsrc.Loc, int]) -> str:
    """``file:line: path`` of a place in a composed file."""
    return yamlsrc.problem(source, data, loc, lines, "").removesuffix(": ")


def load_specs(paths: Iterable[Path]) -> list[SLOSpec]:
    """Load every spec file; raise ConfigError listing every problem of every file.

    Across files, SLO ids (``service-name``) and alert names must be unique.
    """
    specs: list[SLOSpec] = []
    problems: list[str] = []
    ids: dict[str, str] = {}
    alerts: dict[str, str] = {}
    for path in paths:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{source}:1: (root): cannot read file: {exc}")
            continue
        try:
            data, lines = yamlsrc.compose(text, source=source)
            spec = yamlsrc.validate(data, lines, SLOSpec, source=source)
        except yamlsrc.YamlSourceError as exc:
            problems.extend(exc.problems)
            continue
        for index, slo in enumerate(spec.slos):
            here = _where(source, data, ("slos", index, "name"), lines)
            sid = sloth_id(spec, slo)
            if sid in ids:
                problems.append(f"{here}: SLO {sid} is also defined at {ids[sid]}")
            ids.setdefault(sid, here)
            here = _where(source, data, ("slos", index, "alerting", "name"), lines)
            name = slo.alerting.name
            if name in alerts:
                problems.append(f"{here}: alert {name} is also defined at {alerts[name]}")
            alerts.setdefault(name, here)
        specs.append(spec)
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


# --- the rules ---------------------------------------------------------------------------


def ratio(percent: float) -> Decimal:
    """``99.9`` -> ``Decimal("0.999")``, exact: budgets read 0.001, not 0.0010000000000000009."""
    return Decimal(repr(percent)) / 100


def number(value: Decimal) -> str:
    """A decimal as PromQL writes it: ``0.001``, ``6``."""
    return format(value.normalize(), "f")


def sloth_id(spec: SLOSpec, slo: SLO) -> str:
    return f"{spec.service}-{slo.name}"


def _selector(ids: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in ids.items()) + "}"


def _sli_expr(events: Events, window: str) -> str:
    error = WINDOW_TEMPLATE.sub(window, events.error_query.strip())
    total = WINDOW_TEMPLATE.sub(window, events.total_query.strip())
    return f"({error})\n/\n({total})\n"


def _alert_expr(variant: str, select: str, budget: Decimal) -> str:
    pairs = []
    for pair in BURN_WINDOWS[variant]:
        threshold = f"({number(pair.factor)} * {number(budget)})"
        long, short = (
            f"max(slo:sli_error:ratio_rate{w}{select} > {threshold}) without (sloth_window)"
            for w in (pair.long, pair.short)
        )
        pairs.append(f"(\n  {long}\n  and\n  {short}\n)")
    return "\nor\n".join(pairs) + "\n"


def _default_annotations(variant: str, spec: SLOSpec, slo: SLO, budget: Decimal) -> dict[str, str]:
    long = {"page": "hour or six hours", "ticket": "day or three days"}[variant]
    pairs = ", or ".join(
        f"{number(p.factor)}x over {p.long} and {p.short}" for p in BURN_WINDOWS[variant]
    )
    spent = {"page": "within days", "ticket": "before the 30 days are over"}[variant]
    speed = {"page": "fast", "ticket": "steadily"}[variant]
    what = slo.description.strip().rstrip(".")
    return {
        "summary": f"{spec.service} is burning the error budget of its {slo.name} SLO {speed}",
        "description": (
            f"SLO {spec.service}/{slo.name}{f' ({what})' if what else ''} allows "
            f"{number(budget * 100)}% of events to be bad over 30 days. "
            f"{{{{ $value | humanizePercentage }}}} were bad over the last {long}, more than "
            f"the budget allows ({pairs}): at this rate the budget is spent {spent}."
        ),
        "runbook": f"docs/runbooks/{slo.alerting.name}.md",
    }


def _rule(
    key: str,
    name: str,
    expr: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {key: name, "expr": expr, "labels": dict(labels)}
    if annotations is not None:
        rule["annotations"] = dict(annotations)
    return rule


def generate(spec: SLOSpec) -> dict[str, Any]:
    """The Prometheus rule groups of one spec: ``{"groups": [...]}``, one group per SLO.

    Sloth writes three groups per SLO (SLI recordings, meta recordings, alerts). Here they
    are one group, in that order, because the rules of a group run in order: the alerts
    read this evaluation's SLIs, in Prometheus and in ``promtool test rules`` alike (which
    runs separate groups of a file in no fixed order, so alert values would be one
    evaluation late at random).
    """
    groups: list[dict[str, Any]] = []
    for slo in spec.slos:
        sid = sloth_id(spec, slo)
        ids = {"sloth_id": sid, "sloth_service": spec.service, "sloth_slo": slo.name}
        select = _selector(ids)
        labels = {**spec.labels, **slo.labels, **ids}
        objective = ratio(slo.objective)
        budget = 1 - objective
        on = "on (sloth_id, sloth_slo, sloth_service) group_left"
        rules = [
            _rule(
                "record",
                f"slo:sli_error:ratio_rate{w}",
                _sli_expr(slo.sli.events, w),
                {**labels, "sloth_window": w},
            )
            for w in WINDOWS
        ]
        rules += [
            _rule("record", "slo:objective:ratio", f"vector({number(objective)})", labels),
            _rule("record", "slo:error_budget:ratio", f"vector({number(budget)})", labels),
            _rule("record", "slo:time_period:days", f"vector({PERIOD_DAYS})", labels),
            _rule(
                "record",
                "slo:current_burn_rate:ratio",
                f"slo:sli_error:ratio_rate5m{select}\n/ {on}\nslo:error_budget:ratio{select}\n",
                labels,
            ),
            _rule(
                "record",
                "slo:period_burn_rate:ratio",
                f"slo:sli_error:ratio_rate{PERIOD}{select}\n/ {on}\n"
                f"slo:error_budget:ratio{select}\n",
                labels,
            ),
            _rule(
                "record",
                "slo:period_error_budget_remaining:ratio",
                f"1 - slo:period_burn_rate:ratio{select}",
                labels,
            ),
        ]
        alerting = slo.alerting
        for variant, config in (("page", alerting.page_alert), ("ticket", alerting.ticket_alert)):
            if config.disable:
                continue
            rules.append(
                _rule(
                    "alert",
                    alerting.name,
                    _alert_expr(variant, select, budget),
                    {
                        "severity": SEVERITIES[variant],
                        **alerting.labels,
                        **config.labels,
                        "sloth_severity": variant,
                    },
                    {
                        **_default_annotations(variant, spec, slo, budget),
                        **alerting.annotations,
                        **config.annotations,
                    },
                )
            )
        groups.append({"name": f"slo-{sid}", "rules": rules})
    return {"groups": groups}


# --- the file ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks and long ones folded, so the
    file reads like the hand-written rule files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > 80 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = """\
# GENERATED by `vigil-detector slo generate` from the SLO specs; do not edit by hand:
#     vigil-detector slo generate deploy/config/slos/*.yaml --out deploy/config/rules/slo.yaml
# Sloth-compatible recording rules (slo:*) and multi-window, multi-burn-rate alerts over a
# 30-day period; see detector/slo.py. tests/deploy/test_slo.py fails while it is stale.
"""


def render(specs: Sequence[SLOSpec]) -> str:
    """The rule file of every spec, in order, as YAML text (with a header comment)."""
    groups = [group for spec in specs for group in generate(spec)["groups"]]
    body = yaml.dump(
        {"groups": groups}, Dumper=_Dumper, sort_keys=False, width=90, allow_unicode=True
    )
    return HEADER + body
