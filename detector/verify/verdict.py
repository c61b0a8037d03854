"""Deployment validation: did a change make these queries worse? Pure; no I/O.

A request (``VerifyRequest``, parsed from the CLI's arguments, a YAML/JSON spec or the
body of ``POST /api/v1/verify``) names PromQL queries, or a selector that expands to the
standard ones of docs/instrumentation.md (error ratio, p99 latency, CPU), and either

* a change time with a baseline window before it and an observation window after it
  (``before_after``), or
* a canary and a baseline selector compared side by side over the observation window
  (``canary``): each query's ``$selector`` is filled with one, then the other.

Each query is judged on three pieces of evidence, each with an explicit threshold:

1. **material**: the observed median is worse than the baseline median by at least
   ``min_relative_change`` of it and ``min_absolute_change`` (in the query's unit);
2. **significant**: a one-sided Mann-Whitney U test (scipy) in the bad direction has
   ``p < alpha``, and the effect size (Cliff's delta, -1..1, worse positive) is at least
   ``min_effect`` — a shift that noise alone would not produce;
3. **anomalous**: Vigil's detector (the ensemble, without a daily profile), having learned
   the baseline, scores each observed sample against that state — not against what it
   learned from the other observed samples — and at least ``min_anomalous_share`` of them
   score ``score_above`` or more on the bad side of the expected value.

``fail``: material, significant and anomalous. ``inconclusive``: too little data, or
material but the test and the detector disagree (one says noise). ``pass``: otherwise.
The request's verdict is the worst of its queries' (fail > inconclusive > pass); the CLI
exits 0, 1 or 2 accordingly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import stats

from detector.config import EnsembleParams
from detector.detectors.base import Scores
from detector.detectors.router import DetectorSet
from detector.errors import SelectorError
from detector.series.selector import parse_selector
from servicekit.durations import Seconds

# Bounds on the work one request asks of Prometheus (the API forwards PromQL there):
# steps finer than this are below any sane scrape interval, and Prometheus itself
# refuses a range query of more than 11,000 points per series.
MIN_STEP_S = 5.0
MAX_POINTS_PER_QUERY = 11_000

Verdict = Literal["pass", "fail", "inconclusive"]
Direction = Literal["up_is_bad", "down_is_bad", "both"]
_RANK = {"pass": 0, "inconclusive": 1, "fail": 2}
EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "inconclusive": 2}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VerifyQuery(_Model):
    """One query to judge; ``$selector`` in it is replaced by the request's selector (or
    the canary's and the baseline's)."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    query: str = Field(min_length=1, max_length=4096, description="PromQL returning one series")
    direction: Direction = Field("up_is_bad", description="which way is worse")
    min_relative_change: float = Field(
        0.1, ge=0.0, description="worse by at least this share of the baseline median"
    )
    min_absolute_change: float = Field(
        0.0, ge=0.0, description="and by at least this much, in the query's unit"
    )


class Thresholds(_Model):
    """How strong each piece of evidence must be."""

    alpha: float = Field(
        0.01, gt=0.0, lt=1.0, description="Mann-Whitney p-value below which the shift is not noise"
    )
    min_effect: float = Field(
        0.33, ge=0.0, le=1.0, description="Cliff's delta toward worse (0.33: a medium effect)"
    )
    score_above: float = Field(
        0.999, gt=0.0, lt=1.0, description="an observed sample scoring this or more is anomalous"
    )
    min_anomalous_share: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="share of observed samples that must be anomalous on the bad side",
    )
    min_baseline_samples: int = Field(20, ge=5, description="fewer: inconclusive")
    min_observed_samples: int = Field(8, ge=3, description="fewer: inconclusive")


def standard_queries() -> tuple[VerifyQuery, ...]:
    """Rate, errors, duration and saturation as docs/instrumentation.md names them."""
    reqs = '{__name__=~".+_requests_total", code!="", $selector}'
    errs = '{__name__=~".+_requests_total", code=~"5..", $selector}'
    hist = '{__name__=~".+_request_duration_seconds_bucket", $selector}'
    return (
        VerifyQuery(
            name="error_ratio",
            query=f"(sum(rate({errs}[2m])) or vector(0)) / sum(rate({reqs}[2m]))",
            min_relative_change=0.5,
            min_absolute_change=0.005,
        ),
        VerifyQuery(
            name="latency_p99",
            query=f"histogram_quantile(0.99, sum by (le) (rate({hist}[2m])))",
            min_relative_change=0.2,
            min_absolute_change=0.005,
        ),
        VerifyQuery(
            name="cpu",
            query="sum(rate(process_cpu_seconds_total{$selector}[2m]))",
            min_relative_change=0.5,
            min_absolute_change=0.01,
        ),
    )


def _inner(selector: str) -> str:
    """``{a="x"}`` or ``a="x"`` -> ``a="x"`` (checked)."""
    text = selector.strip()
    inner = text[1:-1].strip() if text.startswith("{") and text.endswith("}") else text
    try:
        parse_selector("{" + inner + "}")
    except SelectorError as exc:
        raise ValueError(f"selector {selector!r}: {exc}") from exc
    return inner


class VerifyRequest(_Model):
    """What to verify, over which windows, with which thresholds."""

    queries: tuple[VerifyQuery, ...] = Field(
        (), max_length=50, description="none: the standard queries (needs selector or canary)"
    )
    selector: str | None = Field(
        None, description="label matchers of the changed workload, for $selector"
    )
    change_time: float | None = Field(
        None, description="unix seconds (or RFC 3339 in specs); none: now - observe_s"
    )
    baseline_s: Seconds = Field(
        1800.0, gt=0.0, le=7 * 86400.0, description="window before the change"
    )
    observe_s: Seconds = Field(900.0, gt=0.0, le=86400.0, description="window after the change")
    skip_s: Seconds = Field(
        0.0, ge=0.0, description="seconds after the change left out (the rollout settling)"
    )
    step_s: Seconds = Field(
        15.0,
        ge=MIN_STEP_S,
        le=3600.0,
        description="resolution of the range queries; a window may span at most MAX_POINTS_PER_QUERY steps",
    )
    canary: str | None = Field(
        None, description="label matchers of the canary (side by side with baseline_selector)"
    )
    baseline_selector: str | None = Field(None, description="label matchers of the stable version")
    thresholds: Thresholds = Thresholds()

    @field_validator("change_time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(r"[0-9.]+", value):
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(
                    f"change_time {value!r}: expected unix seconds or RFC 3339 "
                    "(2026-11-27T10:00:00Z)"
                ) from exc
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            return stamp.timestamp()
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        return value

    @field_validator("selector", "canary", "baseline_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        return None if value is None else _inner(value)

    @model_validator(mode="after")
    def _consistent(self) -> VerifyRequest:
        if (self.canary is None) != (self.baseline_selector is None):
            raise ValueError("canary and baseline_selector go together (side by side)")
        uses = any("$selector" in q.query for q in self.effective_queries())
        if uses and self.selector is None and self.canary is None:
            raise ValueError(
                "the queries use $selector: give selector (or canary and baseline_selector)"
            )
        if self.canary is not None and not uses:
            raise ValueError(
                "canary mode compares each query filled with the canary's and "
                "the baseline's selector: the queries must use $selector"
            )
        longest_s = max(self.observe_s, 0.0 if self.canary is not None else self.baseline_s)
        if longest_s / self.step_s + 1 > MAX_POINTS_PER_QUERY:
            raise ValueError(
                f"a {longest_s:g} s window at step_s {self.step_s:g} is "
                f"{longest_s / self.step_s + 1:.0f} points per query, more than "
                f"{MAX_POINTS_PER_QUERY}: raise step_s to at least "
                f"{math.ceil(longest_s / (MAX_POINTS_PER_QUERY - 1))} or shorten the window"
            )
        if self.skip_s >= self.observe_s:
            raise ValueError(
                f"skip_s ({self.skip_s}) leaves nothing of observe_s ({self.observe_s})"
            )
        names = [q.name for q in self.effective_queries()]
        if len(set(names)) != len(names):
            raise ValueError(f"query names must be unique: {names}")
        return self

    @property
    def mode(self) -> Literal["before_after", "canary"]:
        return "before_after" if self.canary is None else "canary"

    def effective_queries(self) -> tuple[VerifyQuery, ...]:
        return self.queries or standard_queries()


@dataclass(frozen=True, slots=True)
class Window:
    """One range query to make: [start_s, end_s] at step_s."""

    query: str
    start_s: float
    end_s: float
    step_s: float


def plan(req: VerifyRequest, *, now_s: float) -> list[tuple[VerifyQuery, Window, Window]]:
    """Per query, the baseline and the observed range query."""
    change = req.change_time if req.change_time is not None else now_s - req.observe_s
    observed_from, observed_to = change + req.skip_s, min(change + req.observe_s, now_s)
    out = []
    for q in req.effective_queries():
        if req.canary is not None and req.baseline_selector is not None:
            base = Window(
                q.query.replace("$selector", req.baseline_selector),
                observed_from,
                observed_to,
                req.step_s,
            )
            seen = Window(
                q.query.replace("$selector", req.canary), observed_from, observed_to, req.step_s
            )
        else:
            text = q.query.replace("$selector", req.selector or "")
            base = Window(text, change - req.baseline_s, change - req.step_s, req.step_s)
            seen = Window(text, observed_from, observed_to, req.step_s)
        out.append((q, base, seen))
    return out


@dataclass(frozen=True, slots=True)
class Judgement:
    """One query's verdict with the evidence behind it."""

    name: str
    verdict: Verdict
    reasons: tuple[str, ...]
    baseline_query: str
    observed_query: str
    n_baseline: int
    n_observed: int
    baseline_median: float | None = None
    observed_median: float | None = None
    relative_change: float | None = None  # toward worse; negative: better
    p_value: float | None = None
    effect: float | None = None  # Cliff's delta toward worse
    anomalous_share: float | None = None


# the detector for short windows: no daily profile, a short warm-up, and the Gaussian tail
# beyond the baseline (a baseline of minutes is too short to trust the edge of its own
# largest values, which the service's power-law tail extrapolates from); each observed
# sample is judged alone against the baseline
VERIFY_DETECTOR = EnsembleParams(season_bins=0, warmup_samples=10, tail_index=0.0)


def score_against(
    baseline_ts: NDArray[np.int64],
    baseline: NDArray[np.float64],
    observed_ts: NDArray[np.int64],
    observed: NDArray[np.float64],
    params: EnsembleParams = VERIFY_DETECTOR,
) -> Scores:
    """Each observed sample scored against the state learned from the baseline only: one
    series per observed sample, each fed the whole baseline, then that sample."""
    m, n = int(observed.shape[0]), int(baseline.shape[0])
    detectors = DetectorSet()
    for slot in range(m):
        detectors.configure(slot, params)
    slots = np.tile(np.arange(m, dtype=np.int32), n)
    ts = np.repeat(baseline_ts, m)
    values = np.repeat(baseline, m)
    learned = Scores.empty(m * n)
    detectors.score_learn(slots, np.ascontiguousarray(ts), np.ascontiguousarray(values), learned)
    last = int(baseline_ts[-1]) if n else 0
    when = np.maximum(observed_ts, last + 1).astype(np.int64)
    out = Scores.empty(m)
    detectors.score_learn(
        np.arange(m, dtype=np.int32), when, np.ascontiguousarray(observed, dtype=np.float64), out
    )
    return out


def judge(
    q: VerifyQuery,
    th: Thresholds,
    *,
    base: Window,
    seen: Window,
    baseline_ts: NDArray[np.int64],
    baseline: NDArray[np.float64],
    observed_ts: NDArray[np.int64],
    observed: NDArray[np.float64],
) -> Judgement:
    """The verdict of one query from its two sample sets (non-finite samples dropped)."""
    keep_b, keep_o = np.isfinite(baseline), np.isfinite(observed)
    baseline_ts, baseline = baseline_ts[keep_b], baseline[keep_b]
    observed_ts, observed = observed_ts[keep_o], observed[keep_o]
    nb, no = int(baseline.shape[0]), int(observed.shape[0])
    facts: dict[str, Any] = {
        "name": q.name,
        "baseline_query": base.query,
        "observed_query": seen.query,
        "n_baseline": nb,
        "n_observed": no,
    }
    short = []
    if nb < th.min_baseline_samples:
        short.append(f"{nb} baseline samples, fewer than {th.min_baseline_samples}")
    if no < th.min_observed_samples:
        short.append(f"{no} observed samples, fewer than {th.min_observed_samples}")
    if short:
        return Judgement(
            verdict="inconclusive",
            reasons=(
                *short,
                "widen the windows, lower step_s, or check that the query returns data",
            ),
            **facts,
        )
    b_med, o_med = float(np.median(baseline)), float(np.median(observed))
    sign = -1.0 if q.direction == "down_is_bad" else 1.0
    change = o_med - b_med
    worse = abs(change) if q.direction == "both" else sign * change
    relative = worse / abs(b_med) if b_med != 0 else (math.inf if worse > 0 else 0.0)
    alternative = {"up_is_bad": "greater", "down_is_bad": "less", "both": "two-sided"}
    test = stats.mannwhitneyu(observed, baseline, alternative=alternative[q.direction])
    p = float(test.pvalue) if math.isfinite(float(test.pvalue)) else 1.0
    delta = 2.0 * float(test.statistic) / (nb * no) - 1.0  # Cliff's delta, observed > base
    effect = abs(delta) if q.direction == "both" else sign * delta
    scored = score_against(baseline_ts, baseline, observed_ts, observed)
    high = scored.score >= th.score_above
    side = {
        "up_is_bad": observed > scored.expected,
        "down_is_bad": observed < scored.expected,
        "both": np.ones(no, dtype=np.bool_),
    }[q.direction]
    share = float(np.mean(high & side))
    material = worse >= q.min_absolute_change and relative >= q.min_relative_change
    significant = p < th.alpha and effect >= th.min_effect
    anomalous = share >= th.min_anomalous_share
    said = (
        f"median {_num(b_med)} -> {_num(o_med)} ({_pct(relative)} toward worse; "
        f"needs {_pct(q.min_relative_change)} and {_num(q.min_absolute_change)})"
    )
    test_said = (
        f"Mann-Whitney p={p:.2g} (alpha {th.alpha}), Cliff's delta {effect:+.2f} "
        f"toward worse (needs {th.min_effect})"
    )
    det_said = (
        f"{share:.0%} of observed samples anomalous (score >= {th.score_above}) on "
        f"the bad side (needs {th.min_anomalous_share:.0%})"
    )
    verdict: Verdict
    reasons: tuple[str, ...]
    if not material:
        verdict, reasons = "pass", (f"not material: {said}",)
    elif significant and anomalous:
        verdict, reasons = "fail", (f"worse: {said}", test_said, det_said)
    elif significant or anomalous:
        verdict = "inconclusive"
        reasons = (
            f"material: {said}",
            test_said + ("" if significant else ": could be noise"),
            det_said + ("" if anomalous else ": within what the baseline showed"),
            "the test and the detector disagree; observe longer or look closer",
        )
    else:
        verdict, reasons = "pass", (f"within noise: {said}", test_said, det_said)
    return Judgement(
        verdict=verdict,
        reasons=reasons,
        baseline_median=b_med,
        observed_median=o_med,
        relative_change=relative,
        p_value=p,
        effect=effect,
        anomalous_share=share,
        **facts,
    )


def unjudged(q: VerifyQuery, *, base: Window, seen: Window, reason: str) -> Judgement:
    """A query that could not be judged (Prometheus error, several series...)."""
    return Judgement(
        name=q.name,
        verdict="inconclusive",
        reasons=(reason,),
        baseline_query=base.query,
        observed_query=seen.query,
        n_baseline=0,
        n_observed=0,
    )


def overall(judgements: Sequence[Judgement]) -> Verdict:
    if not judgements:
        return "inconclusive"
    return max((j.verdict for j in judgements), key=lambda v: _RANK[v])


def report(req: VerifyRequest, judgements: Sequence[Judgement], *, now_s: float) -> dict[str, Any]:
    """The JSON document the API returns and ``--json`` prints."""
    change = req.change_time if req.change_time is not None else now_s - req.observe_s
    return {
        "verdict": overall(judgements),
        "mode": req.mode,
        "change_time": datetime.fromtimestamp(change, UTC).isoformat(),
        "windows": {
            "baseline_s": req.baseline_s,
            "observe_s": req.observe_s,
            "skip_s": req.skip_s,
            "step_s": req.step_s,
        },
        "thresholds": req.thresholds.model_dump(),
        "queries": [_clean(asdict(j)) for j in judgements],
    }


def render_text(doc: dict[str, Any]) -> str:
    """The report for people: the verdict first, then each query's reasons."""
    lines = [f"verdict: {doc['verdict'].upper()} ({doc['mode']}, change at {doc['change_time']})"]
    for q in doc["queries"]:
        lines.append(
            f"  {q['verdict']:<12} {q['name']}  [{q['n_baseline']} baseline, "
            f"{q['n_observed']} observed samples]"
        )
        lines += [f"      {reason}" for reason in q["reasons"]]
    return "\n".join(lines) + "\n"


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    """JSON has no inf/NaN: they become strings."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _num(value: float) -> str:
    return f"{value:.4g}"


def _pct(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:+.0%}"
