"""DetectorConfig: the YAML configuration of ``vigil-detector serve``, validated at load.

This module owns the configuration models and ``load_config``. It must not start anything:
the app builds its objects from the returned model. Every problem in a file is reported at
once as ``file:line: path: message``.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from detector.errors import ConfigError, SelectorError
from detector.series.selector import Selector, parse_selector
from servicekit import yamlsrc
from servicekit.durations import Seconds
from servicekit.tls import OutgoingTLS, ServerTLS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RobustParams(_Model):
    """The robust-level detector: Huber-clipped exponentially weighted level and scale."""

    kind: Literal["robust"] = "robust"
    alpha: float = Field(0.02, gt=0.0, lt=1.0, description="weight of each new sample once warm")
    clip_sigmas: float = Field(
        3.0, gt=0.0, description="residuals beyond this many sigmas are clipped before learning"
    )
    warmup_samples: int = Field(
        30, ge=2, le=100_000, description="samples learned before scores are reported"
    )
    band_sigmas: float = Field(
        3.29, gt=0.0, description="half-width of the expected band, in sigmas (3.29 ~ 0.999)"
    )
    protect_above: float = Field(
        math.inf, gt=0.0, description="samples scoring at or above this are not learned"
    )
    min_scale: float = Field(
        1e-9,
        ge=0.0,
        description="absolute floor of the scale, so a flat series does not divide by zero",
    )


class EnsembleParams(_Model):
    """The default detector: level and daily-profile signals, each calibrated by its own
    history; the band is the score's level set (see docs/detectors.md)."""

    kind: Literal["ensemble"] = "ensemble"
    alpha_fast: float = Field(
        0.005, gt=0.0, lt=1.0, description="weight of a new sample in the fast level and variance"
    )
    alpha_slow: float = Field(
        0.002,
        gt=0.0,
        lt=1.0,
        description="weight of a new sample in the slow level (shift and seasonal signals)",
    )
    alpha_season: float = Field(
        0.05, gt=0.0, le=1.0, description="weight of a new visit in its time-of-day bin"
    )
    clip_sigmas: float = Field(
        3.0,
        gt=0.0,
        description="residuals beyond this many sigmas are clipped before the fast level learns them",
    )
    decay: float = Field(
        0.9995, gt=0.0, lt=1.0, description="per-sample forgetting of the calibration histograms"
    )
    tail_index: float = Field(
        10.0,
        ge=0.0,
        description="beyond every value a signal has shown, its tail probability falls as (1 + z) to this power from the largest seen (0: the Gaussian tail)",
    )
    warmup_samples: int = Field(
        30, ge=0, le=100_000, description="samples learned before a series is scored (they score 0)"
    )
    season_bins: int = Field(
        48, ge=0, le=2016, description="time-of-day bins of the seasonal profile; 0 turns it off"
    )
    season_period_s: Seconds = Field(86400.0, gt=0.0, description="period of the seasonal profile")
    season_min_visits: int = Field(
        7, ge=1, description="visits of a bin before the seasonal signal uses it"
    )
    season_sample_s: Seconds = Field(
        300.0,
        gt=0.0,
        description="a sample is one visit of its bin, or the share dt / season_sample_s of one when it follows the previous sample sooner",
    )
    band_sigmas: float = Field(
        3.29,
        gt=0.0,
        description="the band's level, as the Gaussian sigmas of the same tail probability (3.29: 0.001); a value outside the band scores at least that level",
    )
    adopt_after_s: Seconds = Field(
        3600.0,
        ge=0.0,
        description="a deviation lasting this long becomes the new normal (0: never); until then anomalous samples teach the detector nothing",
    )


class SpotParams(_Model):
    """DSPOT: peaks over threshold with a generalised Pareto tail per side, on the
    residuals of a robust exponentially weighted level (see docs/detectors.md)."""

    kind: Literal["spot"] = "spot"
    risk: float = Field(
        1e-3,
        gt=0.0,
        lt=0.5,
        description="false-alarm rate q (both tails): the band edges are the DSPOT thresholds at q/2 per tail",
    )
    protect_risk: float = Field(
        1e-9,
        gt=0.0,
        lt=0.5,
        description="samples beyond the DSPOT threshold at this rate are not peaks and move the level only clipped",
    )
    alpha: float = Field(
        0.002,
        gt=0.0,
        lt=1.0,
        description="weight of each new sample in the level and scale once warm",
    )
    clip_sigmas: float = Field(
        2.0,
        gt=0.0,
        description="residuals beyond this many robust sigmas are clipped before the level learns them",
    )
    adopt_samples: int = Field(
        30,
        ge=0,
        description="protected samples in a row on one side after which the level adopts the new value (0: never)",
    )
    warmup_samples: int = Field(
        30, ge=2, le=100_000, description="samples learning only the level and scale (they score 0)"
    )
    threshold_sigmas: float = Field(
        1.5,
        gt=0.0,
        description="peaks-over-threshold threshold t, in robust sigmas of the residual",
    )
    peaks: int = Field(
        64,
        ge=4,
        le=1024,
        description="span, in peaks, of the exponentially weighted moments of each tail's excesses over t (the memory of the tail fit)",
    )
    min_peaks: int = Field(
        10,
        ge=3,
        description="excesses a tail needs before its GPD fit is used (that side scores 0 until then)",
    )
    rate_alpha: float = Field(
        0.002,
        gt=0.0,
        lt=1.0,
        description="weight of a sample in each tail's exceedance-rate estimate",
    )
    min_scale: float = Field(
        1e-9,
        ge=0.0,
        description="absolute floor of the scale, so a flat series does not divide by zero",
    )

    @model_validator(mode="after")
    def _min_peaks_fit(self) -> SpotParams:
        if self.min_peaks > self.peaks:
            raise ValueError(f"min_peaks ({self.min_peaks}) must not exceed peaks ({self.peaks})")
        return self


def _kind_of(value: object) -> str:
    """The detector kind of raw or built params; ``ensemble`` when the key is omitted."""
    if isinstance(value, dict):
        return str(value.get("kind", "ensemble"))
    return str(getattr(value, "kind", "ensemble"))


DetectorParams = Annotated[
    Annotated[RobustParams, Tag("robust")]
    | Annotated[EnsembleParams, Tag("ensemble")]
    | Annotated[SpotParams, Tag("spot")],
    Discriminator(_kind_of),
]


def _check_selector(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(str(exc)) from exc
    return value


class _Matching(_Model):
    """A rule that applies to the tracked series its ``match`` selector selects."""

    match: str | None = Field(
        None,
        description='PromQL-style selector, e.g. {__name__=~"http_.*", job="api"}; none = every series',
    )

    @field_validator("match")
    @classmethod
    def _selector_parses(cls, value: str | None) -> str | None:
        return _check_selector(value)

    def selector(self) -> Selector | None:
        return None if self.match is None else parse_selector(self.match)


class SeriesRule(_Matching):
    """Which series are tracked, and with which detector settings. First match wins."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    max_series: int | None = Field(
        None,
        ge=1,
        description="series this rule may track; new ones beyond are dropped and counted",
    )
    detector: DetectorParams = EnsembleParams()
    transform: Literal["auto", "rate", "none"] = Field(
        "auto",
        description="rate: detect on the per-second rate of a counter; auto: rate for names ending in _total, _count, _sum or _bucket",
    )


class Limits(_Model):
    """Bounds that keep the service alive whatever it is sent."""

    max_series: int = Field(1_000_000, ge=1, description="tracked series, all rules together")
    max_ignored_series: int = Field(
        2_000_000,
        ge=0,
        description="untracked or over-limit series remembered so they cost nothing",
    )
    max_body_bytes: int = Field(16 << 20, ge=1024, description="compressed request body")
    max_decompressed_bytes: int = Field(
        64 << 20, ge=1024, description="decompressed size announced by the snappy header"
    )
    max_labels_per_series: int = Field(64, ge=1)
    max_label_name_bytes: int = Field(1024, ge=1)
    max_label_value_bytes: int = Field(16 << 10, ge=1)
    queue_max_samples: int = Field(
        4_000_000, ge=1000, description="samples waiting for the detectors before writes get 503"
    )
    max_loop_lag_s: Seconds = Field(
        0.25,
        gt=0.0,
        description="while the event loop runs this late, new writes get 503 (load shedding keeps /healthz and the API answering)",
    )
    max_series_per_request: int = Field(
        100_000,
        ge=1,
        description="series in one request (Prometheus sends at most queue_config.max_samples_per_send); more is 413 before any label is looked at",
    )
    max_samples_per_request: int = Field(
        1_000_000,
        ge=1,
        description="samples in one request; more is 413 before the decode arrays grow",
    )


class AuthConfig(_Model):
    bearer_token_file: Path | None = Field(
        None,
        description="file holding the token remote-write senders (and POST /api/v1/verify) must present; VIGIL_DETECTOR_TOKEN overrides it",
    )


class WarmStartConfig(_Model):
    """Learn a new series' recent history from Prometheus before its live samples."""

    enabled: bool = Field(True, description="on when --prometheus is given")
    history_s: Seconds = Field(
        6 * 3600.0, gt=0.0, le=7 * 86400.0, description="how much history to read"
    )
    max_concurrent: int = Field(4, ge=1, le=64, description="queries to Prometheus at once")
    timeout_s: Seconds = Field(
        10.0, gt=0.0, description="per query; live samples are held meanwhile"
    )
    max_backlog: int = Field(
        10_000, ge=0, description="series waiting for a query; beyond, new series start cold"
    )
    detect_period: bool = Field(
        True, description="give a series the candidate period its history repeats best"
    )
    period_candidates_s: tuple[Seconds, ...] = Field(
        (86400.0, 604800.0), description="periods to try (daily, weekly)"
    )
    period_history_s: Seconds = Field(
        15 * 86400.0,
        gt=0.0,
        le=35 * 86400.0,
        description="with detect_period: history read beyond history_s, one sample every period_step_s, so a week can be seen twice (Prometheus keeps 15 days by default)",
    )
    period_step_s: Seconds = Field(
        300.0,
        ge=1.0,
        le=3600.0,
        description="spacing of the samples of that longer history (a subquery's step; raw samples, not averages, so the noise learned is the series' own)",
    )
    recheck_interval_s: Seconds = Field(
        86400.0,
        ge=0.0,
        le=35 * 86400.0,
        description="with detect_period: how often a live series still on a daily profile has its period judged again from its history in Prometheus, and moves to a weekly profile once that history repeats weekly (a week shows once the history spans two; a day apart, a move lands within a day of that); 0: never",
    )
    recheck_per_s: float = Field(
        2.0,
        gt=0.0,
        le=100.0,
        description="re-check queries a second at most, one at a time, none while warm starts wait",
    )


class EntityModel(_Model):
    """How an entity's vector of member deviations is scored.

    ``mahalanobis`` (default): distance from an exponentially weighted mean under an
    exponentially weighted covariance, so a break in how members move *together* stands
    out; ``halfspacetrees``: river's HalfSpaceTrees (density by random half-spaces).
    """

    kind: Literal["mahalanobis", "halfspacetrees"] = "mahalanobis"
    window_size: int = Field(
        250,
        ge=10,
        le=100_000,
        description="evaluations remembered (EW span, or HST's reference window)",
    )

    @field_validator("kind")
    @classmethod
    def _river_installed(cls, value: str) -> str:
        if value == "halfspacetrees" and importlib.util.find_spec("river") is None:
            raise ValueError(
                "halfspacetrees needs the river package, which is not "
                "installed: pip install 'vigil[river]', or use mahalanobis"
            )
        return value

    n_trees: int = Field(10, ge=1, le=100, description="halfspacetrees only")
    height: int = Field(8, ge=2, le=16, description="halfspacetrees only")
    seed: int = 42


class EntityRule(_Matching):
    """Several series of one entity (e.g. a pod's CPU, memory, latency, errors) scored together."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    by: tuple[str, ...] = Field(
        min_length=1, description="labels naming the entity, e.g. [namespace, pod]"
    )
    min_series: int = Field(2, ge=2, description="members needed before an entity is scored")
    max_features: int = Field(32, ge=2, le=256, description="members per entity; more are ignored")
    max_entities: int = Field(
        10_000, ge=1, description="entities of this rule; more are counted and ignored"
    )
    warmup_evaluations: int = Field(300, ge=1, description="evaluations before an entity is scored")
    model: EntityModel = EntityModel()


class PresenceConfig(_Model):
    """When a series counts as stuck (one value repeated) or absent (silent, not stale)."""

    warmup_samples: int = Field(
        30, ge=1, description="samples before a series can be stuck or absent"
    )
    stuck_min_samples: int = Field(
        10, ge=2, description="a run of identical values shorter than this is never stuck"
    )
    stuck_factor: float = Field(
        3.0, ge=1.0, description="stuck when the run is this many times the longest recent run"
    )
    absent_intervals: float = Field(
        5.0, ge=1.0, description="absent after this many of the series' usual intervals"
    )
    absent_min_s: Seconds = Field(60.0, ge=0.0, description="and after at least this long")
    check_interval_s: Seconds = Field(
        15.0, gt=0.0, description="how often the stuck/absent gauges are refreshed"
    )


DEFAULT_RULE = SeriesRule(name="default")

LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
# what an annotation template may name: {value}, {labels.namespace}, ...
TEMPLATE_FIELDS = frozenset(
    {
        "alertname",
        "severity",
        "value",
        "expected",
        "lower",
        "upper",
        "band",
        "direction",
        "score",
        "since",
        "duration",
        "series",
        "metric",
        "what",
        "context",
        "detector",
        "members",
        "worst",
    }
)


def check_template(text: str) -> str:
    """Refuse a template naming a field that does not exist (see TEMPLATE_FIELDS)."""
    for name in TEMPLATE_FIELD.findall(text):
        if name.startswith("labels.") and re.fullmatch(r"labels\.[A-Za-z_][A-Za-z0-9_]*", name):
            continue
        if name not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise ValueError(f"unknown template field {{{name}}}; known: {known}, labels.<name>")
    return text


class SeverityLevel(_Model):
    """A score threshold and the ``severity`` label an alert gets at or above it."""

    severity: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    score: float = Field(
        gt=0.0,
        lt=1.0,
        description="score (vigil_anomaly_score) at or above which this severity applies",
    )


class AlertRule(_Matching):
    """Which tracked series page, how readily, and what the alert says. First match wins."""

    name: str = Field(
        "VigilAnomaly",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$",
        description="the alertname label",
    )
    severities: tuple[SeverityLevel, ...] = Field(
        (
            SeverityLevel(severity="warning", score=0.9999),
            SeverityLevel(severity="critical", score=0.999999),
        ),
        min_length=1,
        max_length=4,
        description="ascending thresholds; the highest reached names the severity",
    )
    for_s: Seconds = Field(
        60.0,
        ge=0.0,
        description="the anomaly must have lasted this long before the alert fires, counting its first sample's own interval (Prometheus's for:, so 60 fires on the first anomalous sample of 5-minute data and on the 4th at 15 s)",
    )
    for_samples: int = Field(
        1, ge=1, le=10_000, description="and this many anomalous samples in a row"
    )
    resolve_below: float | None = Field(
        0.999,
        gt=0.0,
        lt=1.0,
        description="a sample counts as normal below this score (hysteresis); none: below the lowest threshold",
    )
    resolve_s: Seconds = Field(
        120.0,
        ge=0.0,
        description="a firing alert resolves once the series has been normal this long, counting its first normal sample's own interval",
    )
    resolve_samples: int = Field(
        1, ge=1, le=100_000, description="and this many normal samples in a row"
    )
    by: tuple[str, ...] | None = Field(
        None, description="aggregate: one alert per value of these labels, listing its worst series"
    )
    max_listed: int = Field(5, ge=1, le=50, description="series listed in an aggregated alert")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="extra labels (team, ...); they win over the series' labels",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="annotation templates; {value}, {expected}, {labels.pod}, ... (may replace summary and description)",
    )
    runbook_url: str | None = Field(
        None, description="template; default: the detector's own /runbooks/<alertname>"
    )

    @field_validator("severities")
    @classmethod
    def _ascending(cls, value: tuple[SeverityLevel, ...]) -> tuple[SeverityLevel, ...]:
        scores = [level.score for level in value]
        if scores != sorted(set(scores)):
            raise ValueError("thresholds must be strictly ascending")
        if len({level.severity for level in value}) != len(value):
            raise ValueError("severity names must differ")
        return value

    @field_validator("by")
    @classmethod
    def _label_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not re.fullmatch(LABEL_NAME, name):
                raise ValueError(f"{name!r} is not a label name")
        return value

    @field_validator("labels")
    @classmethod
    def _extra_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(LABEL_NAME, name) or name in ("alertname", "severity"):
                raise ValueError(
                    f"{name!r} cannot be an extra label (alertname and "
                    "severity are set by the rule)"
                )
        return value

    @field_validator("annotations")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(LABEL_NAME, name):
                raise ValueError(f"{name!r} is not an annotation name")
            check_template(text)
        return value

    @field_validator("runbook_url")
    @classmethod
    def _runbook(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertRule:
        if self.resolve_below is not None and self.resolve_below > self.severities[0].score:
            raise ValueError(
                f"resolve_below ({self.resolve_below}) must not be above the "
                f"lowest threshold ({self.severities[0].score})"
            )
        return self

    @property
    def normal_below(self) -> float:
        return self.severities[0].score if self.resolve_below is None else self.resolve_below


class AlertingConfig(_Model):
    """Delivery of alerts to Alertmanager and the links they carry."""

    resend_s: Seconds = Field(
        30.0, gt=0.0, description="firing alerts are re-sent this often, with endsAt 4 x ahead"
    )
    timeout_s: Seconds = Field(5.0, gt=0.0, description="per POST to an Alertmanager")
    retry_initial_s: Seconds = Field(
        0.5, gt=0.0, description="first retry delay after a failed POST (doubles up to retry_max_s)"
    )
    retry_max_s: Seconds = Field(30.0, gt=0.0)
    max_pending: int = Field(
        10_000,
        ge=1,
        description="alerts waiting per Alertmanager; beyond, the oldest are dropped and counted",
    )
    max_batch: int = Field(500, ge=1, description="alerts per POST")
    stale_intervals: float = Field(
        5.0, ge=1.0, description="a firing series silent this many of its intervals resolves"
    )
    stale_min_s: Seconds = Field(60.0, ge=0.0, description="and silent at least this long")
    external_url: str | None = Field(
        None, description="how people reach this detector (runbook links); default http://<listen>"
    )
    grafana_url: str | None = Field(None, description="Grafana base URL for dashboard_url")
    dashboard_uid: str = Field(
        "vigil-anomaly", description="the Grafana dashboard that draws a series and its band"
    )
    related_window_s: Seconds = Field(
        900.0, ge=0.0, description="anomalies this close in time count as related"
    )
    max_related: int = Field(5, ge=0, le=50)
    flush_timeout_s: Seconds = Field(
        5.0,
        ge=0.0,
        description="at shutdown, after the last checkpoint, time allowed to deliver the alert updates still queued",
    )


class KubernetesEnrichment(_Model):
    enabled: bool = Field(False, description="look up recent rollouts of the series' workload")
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file; none: the in-cluster service account"
    )
    context: str | None = None
    window_s: Seconds = Field(
        1800.0, gt=0.0, description="rollouts this long before the anomaly count"
    )
    budget_s: Seconds = Field(
        2.0, gt=0.0, description="time allowed; after it the alert goes without"
    )


class LokiEnrichment(_Model):
    url: str | None = Field(None, description="Loki base URL; none: no log lines")
    limit: int = Field(5, ge=1, le=50)
    line_filter: str = Field(
        "(?i)(error|exception|fatal|panic|traceback)", description="LogQL line regex"
    )
    tenant: str | None = Field(None, description="X-Scope-OrgID")
    budget_s: Seconds = Field(2.0, gt=0.0)


class EnrichmentConfig(_Model):
    kubernetes: KubernetesEnrichment = KubernetesEnrichment()
    loki: LokiEnrichment = LokiEnrichment()


class WritebackConfig(_Matching):
    """The detector's view (score, expected value, band) written back by remote-write."""

    url: str | None = Field(
        None, description="remote-write URL (Prometheus /api/v1/write, VictoriaMetrics); none: off"
    )
    interval_s: Seconds = Field(
        15.0, gt=0.0, description="the latest values of updated series are sent this often"
    )
    timeout_s: Seconds = Field(10.0, gt=0.0)
    max_series: int = Field(
        100_000,
        ge=1,
        description="series per interval; beyond, the most anomalous are kept and the rest counted",
    )
    bearer_token_file: Path | None = None
    format: Literal["vigil", "vmanomaly"] = Field(
        "vigil",
        description="vigil: vigil_anomaly_score, _expected, _lower, _upper (score 0..1) with metric_name and detector labels; vmanomaly: anomaly_score (> 1 anomalous), y, yhat, yhat_lower, yhat_upper with the metric name as the for label, so vmanomaly's dashboards and alert rules work unchanged",
    )
    anomalous_above: float = Field(
        0.9999,
        gt=0.0,
        lt=1.0,
        description="format vmanomaly: the Vigil score written as anomaly_score 1.0 (use your alert rules' lowest severity score)",
    )


class CheckpointConfig(_Model):
    """Checkpoints of the series state in --state-dir (one is always written at shutdown)."""

    interval_s: Seconds = Field(
        60.0,
        ge=0.0,
        description="a checkpoint is also written this often while serving, so a crash loses at most this much; 0: only at shutdown",
    )


class ConsoleConfig(_Model):
    """The browser console at / and the recent history its charts draw."""

    history_series: int = Field(
        200,
        ge=0,
        le=100_000,
        description="series whose recent samples are kept for the charts (the most recently anomalous); 0: no charts",
    )
    history_samples: int = Field(
        720, ge=8, le=100_000, description="samples kept per series (a ring: the newest)"
    )
    history_after_s: Seconds = Field(
        600.0, ge=0.0, description="a series is still recorded this long after its anomaly ended"
    )
    history_keep_s: Seconds = Field(
        6 * 3600.0, gt=0.0, description="and its chart is kept this long after that"
    )
    remediator_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="the remediator's console, linked from each anomaly (its runs)",
    )


class DetectorConfig(_Model):
    limits: Limits = Limits()
    auth: AuthConfig = AuthConfig()
    series: tuple[SeriesRule, ...] = (DEFAULT_RULE,)
    warm_start: WarmStartConfig = WarmStartConfig()
    presence: PresenceConfig = PresenceConfig()
    entities: tuple[EntityRule, ...] = ()
    entity_interval_s: Seconds = Field(
        15.0, gt=0.0, description="how often entities are scored (about the scrape interval)"
    )
    alerts: tuple[AlertRule, ...] = Field(
        (AlertRule(),), max_length=255, description="alert rules; the default covers every series"
    )
    alerting: AlertingConfig = AlertingConfig()
    enrichment: EnrichmentConfig = EnrichmentConfig()
    writeback: WritebackConfig = WritebackConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    console: ConsoleConfig = ConsoleConfig()
    tls: ServerTLS = Field(ServerTLS(), description="HTTPS (and mTLS) for the listener")
    outgoing_tls: OutgoingTLS = Field(
        OutgoingTLS(),
        description="trust for every https:// peer: Alertmanager, Prometheus, Loki, write-back",
    )

    @model_validator(mode="after")
    def _unique_rule_names(self) -> DetectorConfig:
        seen: set[str] = set()
        for rule in self.series:
            if rule.name in seen:
                raise ValueError(f"series rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        if not self.series:
            raise ValueError("series: at least one rule is needed (omit the key for the default)")
        return self


def load_config(path: Path | None) -> DetectorConfig:
    """Load and validate ``path``; no path gives the defaults (track everything)."""
    if path is None:
        return DetectorConfig()
    try:
        return yamlsrc.load(path, DetectorConfig)
    except yamlsrc.YamlSourceError as exc:
        raise ConfigError(str(exc)) from exc


# What a reload cannot change in a running detector: the listener, credentials, the
# sizes of tables allocated at start, and the background tasks started with their
# settings. A reload that changes one applies the rest and says these wait for a restart.
RESTART_ONLY: tuple[str, ...] = (
    "auth",
    "tls",
    "outgoing_tls",
    "warm_start",
    "entities",
    "checkpoint",
    "console",
    "limits.max_body_bytes",
    "writeback.url",
    "writeback.bearer_token_file",
    "enrichment.kubernetes",
)


def restart_only_changes(old: DetectorConfig, new: DetectorConfig) -> list[str]:
    """The RESTART_ONLY settings that differ between ``old`` and ``new``."""

    def at(cfg: DetectorConfig, path: str) -> object:
        value: object = cfg
        for part in path.split("."):
            value = getattr(value, part)
        return value

    return [path for path in RESTART_ONLY if at(old, path) != at(new, path)]


SCHEMA_ID = "https://vigil.dev/schemas/detector-config/v1.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _finite_defaults(node: Any) -> Any:
    """The schema without defaults JSON cannot write (``protect_above``'s infinity)."""
    if isinstance(node, dict):
        return {
            key: _finite_defaults(value)
            for key, value in node.items()
            if not (key == "default" and isinstance(value, float) and not math.isfinite(value))
        }
    if isinstance(node, list):
        return [_finite_defaults(item) for item in node]
    return node


def config_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the detector's config file, for editors: every field
    with its description and default; durations as seconds or ``1h30m``."""
    schema = _finite_defaults(DetectorConfig.model_json_schema())
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_ID,
        **schema,
        "title": "vigil-detector config",
        "description": "The YAML configuration of vigil-detector serve (README.md, "
        "Configuration). Every key is optional.",
    }


TOKEN_ENV = "VIGIL_DETECTOR_TOKEN"


def read_bearer_token(cfg: DetectorConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The remote-write bearer token, or None when auth is off: ``VIGIL_DETECTOR_TOKEN``
    in ``env`` (the only documented environment override) wins over
    ``auth.bearer_token_file``. The token itself never appears in an error."""
    given = (env or {}).get(TOKEN_ENV, "").strip()
    if given:
        return given
    path = cfg.auth.bearer_token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"auth.bearer_token_file: cannot read {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"auth.bearer_token_file: {path} is empty")
    return token
