"""Alertmanager webhook notifications (version 4): bytes → ``Notification``.

This module owns the wire format of ``POST /webhook``. Everything Alertmanager may send is
validated here, once; the rest of the remediator sees frozen dataclasses only. Unknown
fields are ignored (newer Alertmanagers add some). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remediator.errors import WebhookError

Fingerprint = NewType("Fingerprint", str)
ZERO_TIME = "0001-01-01T00:00:00Z"


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawAlert(_Raw):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str  # wire name
    endsAt: str = ZERO_TIME
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=64)


class RawWebhook(_Raw):
    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[RawAlert]
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a notification, as playbooks see it."""

    status: Literal["firing", "resolved"]
    labels: MappingProxyType[str, str]
    annotations: MappingProxyType[str, str]
    starts_at: str  # as Alertmanager sent it: part of the run's identity
    starts_ms: int
    ends_at: str
    generator_url: str
    fingerprint: Fingerprint

    @property
    def is_firing(self) -> bool:
        return self.status == "firing"

    @property
    def ends_ms(self) -> int | None:
        """``endsAt`` in epoch ms; None for the zero time or a value that is not RFC 3339."""
        try:
            return None if self.ends_at == ZERO_TIME else _ms(self.ends_at, "endsAt")
        except WebhookError:
            return None

    @property
    def score(self) -> float | None:
        """The ``score`` annotation as a finite number (Vigil's detector sets it); else None."""
        try:
            value = float(self.annotations.get("score", ""))
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: tuple[Alert, ...]
    group_key: str
    external_url: str
    truncated_alerts: int


def _ms(text: str, where: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError as exc:
        raise WebhookError(f"{where}: {text!r} is not an RFC 3339 time") from exc


def _alert(raw: RawAlert, index: int) -> Alert:
    return Alert(
        status=raw.status,
        labels=MappingProxyType(dict(raw.labels)),
        annotations=MappingProxyType(dict(raw.annotations)),
        starts_at=raw.startsAt,
        starts_ms=_ms(raw.startsAt, f"alerts[{index}].startsAt"),
        ends_at=raw.endsAt,
        generator_url=raw.generatorURL,
        fingerprint=Fingerprint(raw.fingerprint),
    )


def alert_from_json(data: Any) -> Alert:
    """One alert in webhook form (for ``simulate`` and the audit); WebhookError if not."""
    try:
        return _alert(RawAlert.model_validate(data), 0)
    except ValidationError as exc:
        raise WebhookError(_explain(exc)) from exc


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_notification(body: bytes, *, max_alerts: int = 1000) -> Notification:
    """Validate a webhook body; WebhookError saying what is wrong and where."""
    try:
        # strict UTF-8 (RFC 8259): json.loads(bytes) would let encoded surrogates through
        data = json.loads(body.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise WebhookError(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # json recurses per nesting level
        raise WebhookError(
            "body is not an Alertmanager notification: JSON nested too deeply"
        ) from exc
    if _SURROGATE_ESCAPE.search(body):
        # json accepts an escaped lone surrogate ("\ud800"), which no UTF-8 writer (the
        # audit, the logs, the Kubernetes API) can encode; Alertmanager never sends one
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WebhookError(
                f"body is not valid Unicode: a lone UTF-16 surrogate "
                f"{exc.object[exc.start : exc.end]!r}"
            ) from exc
    if (
        isinstance(data, dict)
        and isinstance(data.get("alerts"), list)
        and len(data["alerts"]) > max_alerts
    ):
        raise WebhookError(
            f"alerts: {len(data['alerts'])} alerts, more than the limit of "
            f"{max_alerts} (max_alerts_per_webhook); set max_alerts in the "
            "Alertmanager webhook_config"
        )
    try:
        raw = RawWebhook.model_validate(data)
    except ValidationError as exc:
        raise WebhookError(f"not an Alertmanager version 4 notification: {_explain(exc)}") from exc
    return Notification(
        receiver=raw.receiver,
        status=raw.status,
        alerts=tuple(_alert(a, i) for i, a in enumerate(raw.alerts)),
        group_key=raw.groupKey,
        external_url=raw.externalURL,
        truncated_alerts=raw.truncatedAlerts,
    )
