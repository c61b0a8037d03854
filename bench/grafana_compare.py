"""Vigil's default detector beside Grafana's promql-anomaly-detection framework, on the
scenario suite's series, the framework running in a real Prometheus.

The series are ``bench/scenarios.py``'s (same families, seeds and sizes: clean and
anomalous, 15 s scrapes). Vigil's figures come from ``scenarios.run_suite`` (the
service path). For the framework (its ``adaptive`` and ``robust`` strategies, the rule
files read from ``--grafana-rules DIR``, never copied into this repository), the series
are written as OpenMetrics and backfilled into a temp TSDB with promtool; the
framework's recording rules are backfilled over the whole history with ``promtool tsdb
create-blocks-from rules`` against a real Prometheus, in dependency passes; each
strategy's ``AnomalyDetected`` expression is run as a range query at its evaluation
interval (1 m, Prometheus's default), and ``for: 5m`` is applied to its results as the
rule manager does (``bench/promrules.py``).

How the series are fed, as its README says to opt a series in: every series gets
``anomaly_name`` (unique), ``anomaly_type`` (``requests`` for request rates, ``latency``,
``errors``, ``resource`` for other gauges) and ``anomaly_strategy``; a series is written
once per strategy. Gauges carry those labels directly (as a relabelling would) and are
written one sample a minute, the latest 15 s sample at or before each whole minute
(a failed scrape's staleness marker becomes a plain NaN, which the framework's ``> 0``
selection drops as it would drop a stale series): the framework reads its input only
through its 1-minute ``select`` rules, which take one sample a minute anyway. Counters
are written raw at 15 s and tagged by a recording rule on ``rate(...[5m])``, as its
examples do.

The figures are ``bench/scenarios.py``'s (``measure`` and ``summarise``): on clean
series, pages per 1,000 series-days (a page = a period that turned firing); on anomalous
ones, the share found, the delay in 15 s samples to the first firing sample of the
labelled interval (at 1-minute evaluations and ``for: 5m``, 20 is the framework's
least), the share of the interval firing, pages per anomaly, still firing at the series'
last sample (lasting anomalies) and samples from the end until it resolves (short ones).
The framework publishes no per-sample band for ``robust`` (its level is an hour's
median), so band coverage is Vigil's only.

The default size (4 + 4 series a family, 7 days: 3.1M samples in) takes ~23 min on two
busy cores, nearly all of it in the framework's 1-day ``quantile_over_time`` rules;
Vigil's side takes 5 s. Prints a table (three rows a family) and, as its last line, one
JSON object with every figure. Usage:
  python -m bench.grafana_compare --grafana-rules DIR [--series-per-family 4] [--days 7]
      [--seed 1] [--families a,b] [--strategies adaptive,robust] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench import promrules, scenarios
from bench.promrules import OmSeries, RuleGroup
from bench.scenario_data import FAMILIES, Series

STRATEGIES = ("adaptive", "robust")
EVAL_INTERVAL_S = 60.0  # Prometheus's default evaluation_interval
MINUTE_MS = 60_000
LOOKBACK_MS = 300_000  # Prometheus's default lookback: an older sample is not seen
COUNTER_RATE = "5m"  # the framework's examples tag rate(...[5m])
ANOMALY_TYPE = {  # the scenario metric -> the framework's anomaly_type
    "svc_requests_rate": "requests",
    "svc_requests_total": "requests",
    "svc_errors_total": "errors",
    "svc_latency_ms": "latency",
    "svc_latency_seconds": "latency",
    "svc_gauge": "resource",
    "svc_queue_length": "resource",
}
DEFAULTS = {"series_per_family": 4, "days": 7.0}


def series_name(s: Series, index: int) -> str:
    return f"{s.family}/{'anomalous' if s.anomalous else 'clean'}/{index}"


def per_minute(s: Series) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The latest sample at or before each whole minute (NaN where it is a staleness
    marker; no sample where it is older than the lookback)."""
    first = -(-int(s.ts_ms[0]) // MINUTE_MS) * MINUTE_MS
    minutes = np.arange(first, int(s.ts_ms[-1]) + 1, MINUTE_MS, dtype=np.int64)
    at = np.searchsorted(s.ts_ms, minutes, side="right") - 1
    seen = minutes - s.ts_ms[at] <= LOOKBACK_MS
    values = np.where(s.stale[at], np.nan, s.values[at])
    return minutes[seen], values[seen]


def build_input(
    series: Sequence[Series], strategies: Sequence[str]
) -> tuple[dict[tuple[str, str], list[OmSeries]], list[RuleGroup]]:
    """The OpenMetrics families to backfill and the rules that tag counters' rates."""
    families: dict[tuple[str, str], list[OmSeries]] = {}
    counters: set[str] = set()
    for k, s in enumerate(series):
        name = series_name(s, k)
        anomaly_type = ANOMALY_TYPE[s.metric]
        if s.is_counter:
            counters.add(s.metric)
            kept = ~s.stale
            families.setdefault((s.metric, "counter"), []).append(
                OmSeries(
                    labels={"scenario": name, "anomaly_type": anomaly_type},
                    ts_ms=s.ts_ms[kept],
                    values=s.values[kept],
                )
            )
            continue
        ts, values = per_minute(s)
        for strategy in strategies:
            families.setdefault((s.metric, "gauge"), []).append(
                OmSeries(
                    labels={
                        "anomaly_name": name,
                        "anomaly_type": anomaly_type,
                        "anomaly_strategy": strategy,
                    },
                    ts_ms=ts,
                    values=values,
                )
            )
    rules = [
        promrules.Rule.model_validate(
            {
                "record": f"scenario:{metric.removesuffix('_total')}:rate{COUNTER_RATE}",
                "expr": f'label_replace(rate({metric}[{COUNTER_RATE}]), "anomaly_name", "$1", '
                f'"scenario", "(.+)")',
                "labels": {"anomaly_strategy": strategy},
            }
        )
        for metric in sorted(counters)
        for strategy in strategies
    ]
    tagging = [RuleGroup(name="ScenarioCounterRates", rules=rules)] if rules else []
    return families, tagging


@dataclass(frozen=True, slots=True)
class Framework:
    """The strategies' rule files as read from ``--grafana-rules``."""

    groups: dict[str, list[RuleGroup]]  # strategy -> its groups
    sha256: dict[str, str]
    commit: str | None  # the checkout's HEAD, when DIR is in a git checkout


def load_framework(rules_dir: Path, strategies: Sequence[str]) -> Framework:
    groups, digests = {}, {}
    for strategy in strategies:
        path = rules_dir / f"{strategy}.yml"
        if not path.is_file():
            raise promrules.RulesError(
                f"{path}: not found; --grafana-rules is the rules/ directory of a clone of "
                f"https://github.com/grafana/promql-anomaly-detection (docs/detectors.md)"
            )
        groups[strategy] = promrules.load_rules(path).groups
        digests[strategy] = hashlib.sha256(path.read_bytes()).hexdigest()
        if not any(r.alert for g in groups[strategy] for r in g.rules):
            raise promrules.RulesError(f"{path}: no alerting rule to measure")
    try:
        commit: str | None = subprocess.run(
            ["git", "-C", str(rules_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return Framework(groups=groups, sha256=digests, commit=commit)


def framework_traces(
    series: Sequence[Series], fw: Framework, *, workdir: Path
) -> tuple[dict[str, list[scenarios.Trace]], dict[str, float]]:
    """Per strategy, one ``Trace`` per series: the framework's alert over its history."""
    strategies = list(fw.groups)
    families, tagging = build_input(series, strategies)
    t0 = time.perf_counter()
    om = promrules.write_openmetrics(workdir / "input", families)
    samples = sum(s.ts_ms.shape[0] for ss in families.values() for s in ss)
    timings = {"openmetrics_write_s": time.perf_counter() - t0, "input_samples": samples}
    # the rules run from the first 2-hour boundary (the series start on one, give or take
    # the jitter of gaps_jitter_shift's half a second)
    start_ms = promrules.block_start(int(min(int(s.ts_ms[0]) for s in series)))
    end_ms = int(max(int(s.ts_ms[-1]) for s in series))
    index = {series_name(s, k): k for k, s in enumerate(series)}
    periods: dict[str, dict[int, list[promrules.Firing]]] = {st: {} for st in strategies}
    with promrules.History(workdir, openmetrics=om, eval_interval_s=EVAL_INTERVAL_S) as h:
        shutil.rmtree(workdir / "input")
        framework = [g for st in strategies for g in fw.groups[st]]
        h.backfill([tagging, framework], start_ms=start_ms, end_ms=end_ms)
        t0 = time.perf_counter()
        for st in strategies:
            for g in fw.groups[st]:
                for rule in (r for r in g.rules if r.alert is not None):
                    for labels, found in h.alert_periods(rule, g, start_ms=start_ms, end_ms=end_ms):
                        if labels.get("anomaly_strategy", st) != st:
                            continue
                        k = index.get(labels.get("anomaly_name", ""))
                        if k is None:
                            raise promrules.RulesError(
                                f"{rule.name} ({st}) returned a series that is not a "
                                f"scenario: {labels}"
                            )
                        periods[st].setdefault(k, []).extend(found)
        timings["alert_queries_s"] = time.perf_counter() - t0
        banded = series_with_bands(h.url, at_ms=end_ms, days=(end_ms - start_ms) / 86_400_000)
        for st in strategies:
            if not banded.get(st):
                raise promrules.RulesError(
                    f"{st}: no series has an anomaly:upper_band after the backfill; the rules "
                    f"did not run over the history (see {workdir}/prometheus.log)"
                )
            timings[f"{st}_series_with_bands"] = banded[st]
        timings.update(h.timings)
    traces: dict[str, list[scenarios.Trace]] = {}
    for st in strategies:
        traces[st] = []
        for k, s in enumerate(series):
            found = sorted(periods[st].get(k, []), key=lambda p: p.start_ms)
            none = np.zeros(s.ts_ms.shape[0], dtype=np.bool_)
            traces[st].append(
                scenarios.Trace(
                    scored=scenarios.scored_mask(s),
                    firing=promrules.firing_mask(s.ts_ms, found),
                    banded=none,
                    inband=none,
                    fires_ms=tuple(p.start_ms for p in found),
                )
            )
    return traces, timings


def series_with_bands(url: str, *, at_ms: int, days: float) -> dict[str, int]:
    """Per strategy, how many series got an upper band at some time of the history."""
    expr = (
        f"count by (anomaly_strategy) (count_over_time("
        f"anomaly:upper_band[{int(np.ceil(days)) + 1}d]))"
    )
    return {
        s.labels.get("anomaly_strategy", ""): int(s.values[-1])
        for s in promrules.query_range(
            url, expr, start_ms=at_ms, end_ms=at_ms, step_s=EVAL_INTERVAL_S
        )
    }


def summarise_traces(
    series: Sequence[Series], traces: Sequence[scenarios.Trace], families: Sequence[str]
) -> dict[str, dict[str, object]]:
    figures = [
        scenarios.measure(s, t, warmup_samples=0) for s, t in zip(series, traces, strict=True)
    ]
    out = {}
    for fam in families:
        rows = [(s, f) for s, f in zip(series, figures, strict=True) if s.family == fam]
        out[fam] = scenarios.summarise(
            [r for r in rows if not r[0].anomalous], [r for r in rows if r[0].anomalous]
        )
    return out


def _cell(v: object, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_table(results: Mapping[str, Mapping[str, Mapping[str, object]]]) -> None:
    """One row per family and detector."""
    print(
        f"{'family':<33}{'detector':<9}|{'pages/1k sd':>12}{'(<6h)':>6}{'firing':>8} |"
        f"{'found':>6}{'delay med':>10}{'max':>5}{'firing':>8}{'pages':>6}{'at end':>7}"
        f"{'resolve':>8}"
    )
    for fam, by in results.items():
        for det, r in by.items():
            print(
                f"{fam if det == 'vigil' else '':<33}{det:<9}|"
                f"{_cell(r['false_pages_per_1k_series_days'], '.1f'):>12}"
                f"{_cell(r['clean_pages_young'], 'd'):>6}"
                f"{_cell(r['clean_firing_share'], '.2%'):>8} |"
                f"{_cell(r['detected'], '.0%'):>6}{_cell(r['delay_median'], '.0f'):>10}"
                f"{_cell(r['delay_max'], '.0f'):>5}"
                f"{_cell(r['anomaly_firing_share'], '.0%'):>8}"
                f"{_cell(r['pages_per_anomaly'], '.2f'):>6}"
                f"{_cell(r['firing_at_end'], '.0%'):>7}"
                f"{_cell(r['resolve_after_median'], '.0f'):>8}"
            )


def _version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.grafana_compare", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument(
        "--grafana-rules",
        type=Path,
        required=True,
        help="the rules/ directory of a promql-anomaly-detection clone",
    )
    ap.add_argument("--series-per-family", type=int, default=DEFAULTS["series_per_family"])
    ap.add_argument("--days", type=float, default=DEFAULTS["days"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--families", help="comma-separated subset (default: all)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument(
        "--workdir", type=Path, help="keep the TSDB and rule passes here (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    families = args.families.split(",") if args.families else list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    strategies = args.strategies.split(",")
    if not strategies or any(st not in STRATEGIES for st in strategies):
        ap.error(f"--strategies: a comma-separated subset of {', '.join(STRATEGIES)}")
    try:
        fw = load_framework(args.grafana_rules, strategies)
    except promrules.RulesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n, days = args.series_per_family, args.days
    t0 = time.perf_counter()
    series = scenarios.build_series(families, n=n, days=days, seed=args.seed)
    vigil = scenarios.run_suite(families, n=n, days=days, seed=args.seed)
    vigil_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="vigil-grafana-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            traces, timings = framework_traces(series, fw, workdir=workdir)
        except promrules.RulesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    grafana = {st: summarise_traces(series, traces[st], families) for st in strategies}
    results = {
        fam: {"vigil": vigil[fam], **{st: grafana[st][fam] for st in strategies}}
        for fam in families
    }
    seconds = time.perf_counter() - t0
    print(
        f"Vigil's default beside promql-anomaly-detection ({', '.join(strategies)}; "
        f"commit {fw.commit or 'unknown'}); {n} clean + {n} anomalous series a family, "
        f"{days:g} days (a family needing more gets its min_days) at 15 s, seed "
        f"{args.seed}; {seconds:.0f} s"
    )
    print_table(results)
    print(
        json.dumps(
            {
                "seed": args.seed,
                "series_per_family": n,
                "days": days,
                "seconds": round(seconds, 1),
                "vigil_seconds": round(vigil_s, 1),
                "timings": {k: round(v, 1) for k, v in timings.items()},
                "framework_commit": fw.commit,
                "rule_files_sha256": fw.sha256,
                "prometheus": _version("prometheus"),
                "eval_interval_s": EVAL_INTERVAL_S,
                "families": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
