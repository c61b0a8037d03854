"""DetectorConfig: the YAML configuration of ``vigil-detector serve``, validated at load.

This module owns the configuration models and ``load_config``. It must not start anything:
the app builds its objects from the returned model. Every problem in a file is reported at
once as ``file:line: path: message``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from detector import yamlsrc
from detector.errors import ConfigError, SelectorError
from detector.selector import Selector, parse_selector


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RobustParams(_Model):
    """The robust-level detector: Huber-clipped exponentially weighted level and scale."""

    kind: Literal["robust"] = "robust"
    alpha: float = Field(0.02, gt=0.0, lt=1.0, description="weight of each new sample once warm")
    clip_sigmas: float = Field(3.0, gt=0.0, description="residuals beyond this many sigmas are clipped before learning")
    warmup_samples: int = Field(30, ge=2, le=100_000, description="samples learned before scores are reported")
    band_sigmas: float = Field(3.29, gt=0.0, description="half-width of the expected band, in sigmas (3.29 ~ 0.999)")
    protect_above: float = Field(math.inf, gt=0.0, description="samples scoring at or above this are not learned")
    min_scale: float = Field(1e-9, ge=0.0, description="absolute floor of the scale, so a flat series does not divide by zero")


class EnsembleParams(_Model):
    """The default detector: level, sustained-shift and daily-profile signals, each
    calibrated by its own history (see docs/detectors.md)."""

    kind: Literal["ensemble"] = "ensemble"
    alpha_fast: float = Field(0.005, gt=0.0, lt=1.0, description="weight of a new sample in the fast level and variance")
    alpha_slow: float = Field(0.002, gt=0.0, lt=1.0, description="weight of a new sample in the slow level (shift and seasonal signals)")
    alpha_season: float = Field(0.05, gt=0.0, le=1.0, description="weight of a new visit in its time-of-day bin")
    clip_sigmas: float = Field(3.0, gt=0.0, description="residuals beyond this many sigmas are clipped before the fast level learns them")
    adopt_samples: int = Field(30, ge=0, description="clipped residuals in a row on one side after which the fast level adopts the new value (0: never)")
    decay: float = Field(0.9995, gt=0.0, lt=1.0, description="per-sample forgetting of the calibration histograms")
    short_samples: int = Field(0, ge=0, le=1000, description="samples averaged by a sustained-shift signal (0: off; the CUSUM covers it)")
    cusum_k: float = Field(1.0, ge=0.0, description="slack of the CUSUM signal, in sigmas of the slow level")
    warmup_samples: int = Field(30, ge=0, le=100_000, description="samples learned before a series is scored (they score 0)")
    season_bins: int = Field(48, ge=0, le=2016, description="time-of-day bins of the seasonal profile; 0 turns it off")
    season_period_s: float = Field(86400.0, gt=0.0, description="period of the seasonal profile")
    season_min_visits: int = Field(7, ge=1, description="visits of a bin before the seasonal signal uses it")
    refractory_samples: int = Field(300, ge=0, description="samples after a score at or above refractory_above that count as less rare")
    refractory_above: float = Field(0.997, gt=0.0, le=1.0)
    refractory_factor: float = Field(100.0, ge=1.0, description="how much less rare samples count during the refractory period")
    band_sigmas: float = Field(3.29, gt=0.0, description="half-width of the expected band, in sigmas")


def _kind_of(value: object) -> str:
    """The detector kind of raw or built params; ``ensemble`` when the key is omitted."""
    if isinstance(value, dict):
        return str(value.get("kind", "ensemble"))
    return str(getattr(value, "kind", "ensemble"))


DetectorParams = Annotated[
    Annotated[RobustParams, Tag("robust")] | Annotated[EnsembleParams, Tag("ensemble")],
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

    match: str | None = Field(None, description='PromQL-style selector, e.g. {__name__=~"http_.*", job="api"}; none = every series')

    @field_validator("match")
    @classmethod
    def _selector_parses(cls, value: str | None) -> str | None:
        return _check_selector(value)

    def selector(self) -> Selector | None:
        return None if self.match is None else parse_selector(self.match)


class SeriesRule(_Matching):
    """Which series are tracked, and with which detector settings. First match wins."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    max_series: int | None = Field(None, ge=1, description="series this rule may track; new ones beyond are dropped and counted")
    detector: DetectorParams = EnsembleParams()
    transform: Literal["auto", "rate", "none"] = Field("auto", description="rate: detect on the per-second rate of a counter; auto: rate for names ending in _total, _count, _sum or _bucket")


class Limits(_Model):
    """Bounds that keep the service alive whatever it is sent."""

    max_series: int = Field(1_000_000, ge=1, description="tracked series, all rules together")
    max_ignored_series: int = Field(2_000_000, ge=0, description="untracked or over-limit series remembered so they cost nothing")
    max_body_bytes: int = Field(16 << 20, ge=1024, description="compressed request body")
    max_decompressed_bytes: int = Field(64 << 20, ge=1024, description="decompressed size announced by the snappy header")
    max_labels_per_series: int = Field(64, ge=1)
    max_label_name_bytes: int = Field(1024, ge=1)
    max_label_value_bytes: int = Field(16 << 10, ge=1)
    queue_max_samples: int = Field(4_000_000, ge=1000, description="samples waiting for the detectors before writes get 503")


class AuthConfig(_Model):
    bearer_token_file: Path | None = Field(None, description="file holding the token remote-write senders must present")


class WarmStartConfig(_Model):
    """Learn a new series' recent history from Prometheus before its live samples."""

    enabled: bool = Field(True, description="on when --prometheus is given")
    history_s: float = Field(6 * 3600.0, gt=0.0, le=7 * 86400.0, description="how much history to read")
    max_concurrent: int = Field(4, ge=1, le=64, description="queries to Prometheus at once")
    timeout_s: float = Field(10.0, gt=0.0, description="per query; live samples are held meanwhile")
    max_backlog: int = Field(10_000, ge=0, description="series waiting for a query; beyond, new series start cold")
    detect_period: bool = Field(True, description="give a series the candidate period its history repeats best")
    period_candidates_s: tuple[float, ...] = Field((86400.0, 604800.0), description="periods to try (daily, weekly)")


class EntityModel(_Model):
    """How an entity's vector of member deviations is scored.

    ``mahalanobis`` (default): distance from an exponentially weighted mean under an
    exponentially weighted covariance, so a break in how members move *together* stands
    out; ``halfspacetrees``: river's HalfSpaceTrees (density by random half-spaces).
    """

    kind: Literal["mahalanobis", "halfspacetrees"] = "mahalanobis"
    window_size: int = Field(250, ge=10, le=100_000, description="evaluations remembered (EW span, or HST's reference window)")
    n_trees: int = Field(10, ge=1, le=100, description="halfspacetrees only")
    height: int = Field(8, ge=2, le=16, description="halfspacetrees only")
    seed: int = 42


class EntityRule(_Matching):
    """Several series of one entity (e.g. a pod's CPU, memory, latency, errors) scored together."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    by: tuple[str, ...] = Field(min_length=1, description="labels naming the entity, e.g. [namespace, pod]")
    min_series: int = Field(2, ge=2, description="members needed before an entity is scored")
    max_features: int = Field(32, ge=2, le=256, description="members per entity; more are ignored")
    max_entities: int = Field(10_000, ge=1, description="entities of this rule; more are counted and ignored")
    warmup_evaluations: int = Field(300, ge=1, description="evaluations before an entity is scored")
    model: EntityModel = EntityModel()


class PresenceConfig(_Model):
    """When a series counts as stuck (one value repeated) or absent (silent, not stale)."""

    warmup_samples: int = Field(30, ge=1, description="samples before a series can be stuck or absent")
    stuck_min_samples: int = Field(10, ge=2, description="a run of identical values shorter than this is never stuck")
    stuck_factor: float = Field(3.0, ge=1.0, description="stuck when the run is this many times the longest recent run")
    absent_intervals: float = Field(5.0, ge=1.0, description="absent after this many of the series' usual intervals")
    absent_min_s: float = Field(60.0, ge=0.0, description="and after at least this long")
    check_interval_s: float = Field(15.0, gt=0.0, description="how often the stuck/absent gauges are refreshed")


DEFAULT_RULE = SeriesRule(name="default")


class DetectorConfig(_Model):
    limits: Limits = Limits()
    auth: AuthConfig = AuthConfig()
    series: tuple[SeriesRule, ...] = (DEFAULT_RULE,)
    warm_start: WarmStartConfig = WarmStartConfig()
    presence: PresenceConfig = PresenceConfig()
    entities: tuple[EntityRule, ...] = ()
    entity_interval_s: float = Field(15.0, gt=0.0, description="how often entities are scored (about the scrape interval)")

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


def read_bearer_token(cfg: DetectorConfig) -> str | None:
    """The configured remote-write bearer token, or None when auth is off."""
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
