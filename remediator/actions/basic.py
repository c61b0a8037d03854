"""Actions that need no cluster: HTTP calls to allow-listed endpoints, Alertmanager
silences and escalations, chat notifications, PromQL checks, waits, and Vigil's own
deployment verification (``vigil.verify``, the detector's POST /api/v1/verify).

Each declares its params model, whether it mutates, its inverse and how it dry-runs (none
of these APIs has a server-side dry-run, so a dry run describes the request instead of
sending it). The network goes only through ``ActionContext.services``.

Dry run: nothing that changes anything leaves: no POST/PUT/PATCH/DELETE, no Alertmanager
write, no chat message; the outcome is ``DryRun({"would_send": ...})``. Reads still run
(PromQL, and the detector's POST /api/v1/verify, which only judges and stores nothing), and
secret files are read so a missing one fails the dry run as it would the real one.
Secrets: every text an outcome carries passes through ``services.redact`` (before any
truncation), a URL that came from a secret is shown as ``<secret NAME>`` and other URLs
without userinfo or query (``redaction.bare_url``).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator import redaction
from remediator.actions.registry import (
    ActionContext,
    DryRun,
    Executed,
    Failed,
    Outcome,
    action,
)
from remediator.catalog.matchers import parse_matcher
from remediator.catalog.templating import Context
from servicekit.durations import Seconds


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_failure(ctx: ActionContext, what: str, status: int, text: str) -> Failed:
    """A refusal by the other end, with a short excerpt of its answer: redacted first (an
    endpoint may echo the request, secrets and all), then cut, with URLs made bare."""
    temporary = status == 429 or status >= 500 or status == 0
    excerpt = " ".join(redaction.bare_urls(ctx.services.redact(text)).split())[:200]
    return Failed(f"{what}: HTTP {status} {excerpt}", temporary=temporary)


# --- http.request ------------------------------------------------------------------------
class SecretRef(_Params):
    secret: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="file name in the secrets directory"
    )


class HttpRequestParams(_Params):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="the HTTP method"
    )
    url: str = Field(
        pattern=r"^https?://",
        max_length=2048,
        description="must fall under one of http.allowed_urls in the remediator config",
    )
    headers: dict[str, str | SecretRef] = Field(
        default_factory=dict,
        description="header: value, or {secret: NAME} for a value kept in the secrets directory",
    )
    json_body: Any = Field(
        None, alias="json", description="the JSON body to send; strings in it may be templates"
    )
    expect_status: tuple[int, ...] = Field(
        (200, 201, 202, 204), description="answers that count as success"
    )
    timeout_s: Seconds = Field(10.0, gt=0, le=300, description="bound on the request")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            if not name or any(c in name for c in ":\r\n ") or not name.isascii():
                raise ValueError(f"{name!r} is not an HTTP header name")
            if isinstance(item, str) and any(c in item for c in "\r\n\x00"):
                raise ValueError(f"header {name}: a value may not hold CR, LF or NUL")
        return value


def _describe_http(p: HttpRequestParams) -> dict[str, Any]:
    headers = {
        k: (f"<secret {v.secret}>" if isinstance(v, SecretRef) else v) for k, v in p.headers.items()
    }
    return {"method": p.method, "url": p.url, "headers": headers, "json": p.json_body}


@action(
    "http.request",
    params=HttpRequestParams,
    mutates=True,
    describe=_describe_http,
    templates={"url": Context.URL},
)
async def http_request(ctx: ActionContext, p: HttpRequestParams) -> Outcome:
    """Send the request; its answer is kept as its status, length and SHA-256 only.

    The run (with its outcome) is readable by anyone who may read ``GET /api/v1/runs/{id}``,
    and an answer may hold what no redactor knows about (a session id, a created API key).
    The length and hash still tell two answers apart and let a person match the endpoint's
    own log. A refused request (unexpected status) keeps a short redacted excerpt instead,
    since that is what someone needs to fix it.
    """
    if not ctx.services.url_allowed(p.url):
        return Failed(
            f"{redaction.bare_url(p.url)} is not in http.allowed_urls of the remediator config"
        )
    headers = {
        k: (ctx.services.secret(v.secret) if isinstance(v, SecretRef) else v)
        for k, v in p.headers.items()
    }  # read in a dry run too: a missing one fails
    if ctx.dry_run:
        return DryRun({"would_send": _describe_http(p)})
    status, text = await ctx.services.http(
        p.method, p.url, headers=headers, body=p.json_body, timeout_s=p.timeout_s
    )
    if status not in p.expect_status:
        return _status_failure(ctx, f"{p.method} {redaction.bare_url(p.url)}", status, text)
    raw = text.encode("utf-8", "replace")
    return Executed(
        {
            "status": status,
            "response_bytes": len(raw),
            "response_sha256": hashlib.sha256(raw).hexdigest(),
        }
    )


# --- alertmanager.silence / expire_silence ------------------------------------------------
class SilenceParams(_Params):
    matchers: tuple[str, ...] = Field(
        min_length=1, description='e.g. alertname="X", pod="{{ labels.pod }}"'
    )
    duration_s: Seconds = Field(
        3600.0, gt=0, le=7 * 86400, description="how long the silence lasts"
    )
    comment: str = Field(
        "silenced by a Vigil playbook",
        min_length=1,
        max_length=1000,
        description="shown in Alertmanager beside the silence",
    )
    created_by: str = Field("vigil-remediator", description="the silence's createdBy")

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_matcher(text)
        return value


def _silence_body(p: SilenceParams, now: datetime) -> dict[str, Any]:
    return {
        "matchers": [parse_matcher(m).to_silence() for m in p.matchers],
        "startsAt": _iso(now),
        "endsAt": _iso(now + timedelta(seconds=p.duration_s)),
        "createdBy": p.created_by,
        "comment": p.comment,
    }


def _describe_silence(p: SilenceParams) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/api/v2/silences",
        "matchers": [parse_matcher(m).to_silence() for m in p.matchers],
        "duration_s": p.duration_s,
        "comment": p.comment,
    }


@action(
    "alertmanager.silence",
    params=SilenceParams,
    mutates=True,
    describe=_describe_silence,
    inverse="alertmanager.expire_silence",
    templates={"matchers[]": Context.MATCHER},
)
async def alertmanager_silence(ctx: ActionContext, p: SilenceParams) -> Outcome:
    now = datetime.fromtimestamp(ctx.clock(), UTC)
    body = _silence_body(p, now)
    if ctx.dry_run:
        return DryRun({"would_send": body})
    status, doc = await ctx.services.alertmanager("POST", "/api/v2/silences", body)
    if status != 200 or not isinstance(doc, dict) or "silenceID" not in doc:
        return _status_failure(ctx, "create silence", status, str(doc))
    silence_id = str(doc["silenceID"])
    return Executed(
        {"silence_id": silence_id, "ends_at": body["endsAt"]},
        inverse=("alertmanager.expire_silence", {"silence_id": silence_id}),
    )


class ExpireSilenceParams(_Params):
    silence_id: str = Field(
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the silence to expire (an undo passes the one it created)",
    )


@action(
    "alertmanager.expire_silence",
    params=ExpireSilenceParams,
    mutates=True,
    describe=lambda p: {"method": "DELETE", "path": f"/api/v2/silence/{p.silence_id}"},
)
async def alertmanager_expire_silence(ctx: ActionContext, p: ExpireSilenceParams) -> Outcome:
    if ctx.dry_run:
        return DryRun({"would_delete": p.silence_id})
    status, doc = await ctx.services.alertmanager("DELETE", f"/api/v2/silence/{p.silence_id}")
    if status != 200:
        return _status_failure(ctx, "expire silence", status, str(doc))
    return Executed({"expired": p.silence_id})


# --- alertmanager.escalate ----------------------------------------------------------------
class EscalateParams(_Params):
    alertname: str = Field(
        "VigilRemediationEscalated",
        pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$",
        description="the alert posted to Alertmanager",
    )
    severity: str = Field("critical", description="its severity label (routing)")
    summary: str = Field(
        min_length=1, max_length=2000, description="its summary annotation, for people"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="more labels (routing); the original alert's are kept"
    )
    duration_s: Seconds = Field(
        3600.0, gt=0, le=7 * 86400, description="endsAt: Alertmanager resolves it after this"
    )


def escalation_alert(
    p: EscalateParams, *, alert: Any, run_id: str, run_url: str, now: datetime
) -> dict[str, Any]:
    """The alert an escalation posts: the original alert's identity plus the run's link."""
    labels = {k: v for k, v in alert.labels.items() if k not in ("alertname", "severity")}
    labels.update(p.labels)
    labels.update(
        {
            "alertname": p.alertname,
            "severity": p.severity,
            "original_alertname": alert.labels.get("alertname", ""),
            "run_id": run_id,
        }
    )
    return {
        "labels": labels,
        "annotations": {
            "summary": p.summary,
            "run_url": run_url,
            "original_fingerprint": str(alert.fingerprint),
        },
        "startsAt": _iso(now),
        "endsAt": _iso(now + timedelta(seconds=p.duration_s)),
        "generatorURL": run_url,
    }


@action(
    "alertmanager.escalate",
    params=EscalateParams,
    mutates=False,
    describe=lambda p: {
        "method": "POST",
        "path": "/api/v2/alerts",
        "alertname": p.alertname,
        "severity": p.severity,
    },
)
async def alertmanager_escalate(ctx: ActionContext, p: EscalateParams) -> Outcome:
    body = [
        escalation_alert(
            p,
            alert=ctx.alert,
            run_id=ctx.run_id,
            run_url=ctx.run_url,
            now=datetime.fromtimestamp(ctx.clock(), UTC),
        )
    ]
    if ctx.dry_run:  # an escalation pages someone: never from a dry run
        return DryRun({"would_send": {"method": "POST", "path": "/api/v2/alerts", "body": body}})
    status, doc = await ctx.services.alertmanager("POST", "/api/v2/alerts", body)
    if status != 200:
        return _status_failure(ctx, "post escalation", status, str(doc))
    return Executed({"alert": body[0]["labels"]})


# --- notify -------------------------------------------------------------------------------
class NotifyParams(_Params):
    url: str | SecretRef = Field(
        description="Slack-compatible incoming webhook (a secret, usually)"
    )
    text: str = Field(min_length=1, max_length=4000, description="the message; may be a template")


@action(
    "notify",
    params=NotifyParams,
    mutates=False,
    templates={"url": Context.URL},
    describe=lambda p: {
        "method": "POST",
        "url": "<secret>" if isinstance(p.url, SecretRef) else p.url,
        "text": p.text,
    },
)
async def notify(ctx: ActionContext, p: NotifyParams) -> Outcome:
    url = ctx.services.secret(p.url.secret) if isinstance(p.url, SecretRef) else p.url
    shown = f"<secret {p.url.secret}>" if isinstance(p.url, SecretRef) else redaction.bare_url(url)
    if not isinstance(p.url, SecretRef) and not ctx.services.url_allowed(url):
        return Failed(f"{shown} is not in http.allowed_urls of the remediator config")
    if ctx.dry_run:
        return DryRun({"would_send": {"method": "POST", "url": shown, "json": {"text": p.text}}})
    status, text = await ctx.services.http(
        "POST", url, headers={}, body={"text": p.text}, timeout_s=10.0
    )
    if not 200 <= status < 300:
        return _status_failure(ctx, "notify", status, text)
    return Executed({"status": status})


# --- promql.check / wait ------------------------------------------------------------------
class PromqlCheckParams(_Params):
    query: str = Field(
        min_length=1,
        max_length=10_000,
        description="PromQL, sent to --prometheus; values from the alert are escaped for PromQL",
    )
    expect: Literal["nonempty", "empty"] = Field(
        "nonempty",
        description="nonempty: the step succeeds when the query returns a sample; empty: when it returns none",
    )


@action(
    "promql.check",
    params=PromqlCheckParams,
    mutates=False,
    templates={"query": Context.PROMQL},
    describe=lambda p: {"promql": p.query, "expect": p.expect},
)
async def promql_check(ctx: ActionContext, p: PromqlCheckParams) -> Outcome:
    result = await ctx.services.prometheus_query(p.query)
    ok = bool(result) if p.expect == "nonempty" else not result
    if not ok:
        return Failed(f"{p.query!r} returned {len(result)} series; expected {p.expect}")
    return Executed({"series": len(result)})


class WaitParams(_Params):
    seconds: Seconds = Field(gt=0, le=3600, description="how long to wait (90, 90s, 5m)")


@action("wait", params=WaitParams, mutates=False, describe=lambda p: {"wait_s": p.seconds})
async def wait(ctx: ActionContext, p: WaitParams) -> Outcome:
    await (ctx.sleep or asyncio.sleep)(p.seconds)
    return Executed({"waited_s": p.seconds})


# --- vigil.verify -------------------------------------------------------------------------
class VerifyQueryParams(_Params):
    """One query of the verification (the detector's VerifyQuery)."""

    name: str = Field(min_length=1, max_length=128)
    query: str = Field(min_length=1, max_length=4096)
    direction: Literal["up_is_bad", "down_is_bad", "both"] = "up_is_bad"
    min_relative_change: float | None = Field(None, ge=0)
    min_absolute_change: float | None = Field(None, ge=0)


class VerifyParams(_Params):
    """Ask Vigil's detector to judge a change (POST /api/v1/verify, docs/verify.md)."""

    selector: str | None = Field(
        None, description="label matchers; without queries: the standard ones"
    )
    queries: tuple[VerifyQueryParams, ...] = Field(
        (), max_length=50, description="the queries to judge; none: the standard ones for selector"
    )
    change_time: str | None = Field(
        None,
        description="RFC 3339 or unix seconds, e.g. {{ alert.startsAt }}; none: now - observe_s",
    )
    baseline_s: Seconds = Field(
        1800.0, gt=0, le=7 * 86400, description="the window before the change that is normal"
    )
    observe_s: Seconds = Field(
        900.0, gt=0, le=86400, description="the window after the change that is judged"
    )
    skip_s: Seconds = Field(
        0.0, ge=0, description="left out right after the change (a rollout settling)"
    )
    step_s: Seconds = Field(15.0, ge=5, le=3600, description="as the detector allows: at least 5 s")
    expect: Literal["pass", "fail"] = Field(
        "pass",
        description="pass: the step succeeds if the change is judged harmless; fail: only if Vigil confirms it made things worse (a gate before undoing it)",
    )

    @model_validator(mode="after")
    def _points(self) -> VerifyParams:
        """The detector's bound (11,000 points a query), checked when the playbook loads
        rather than as a 400 in the middle of a run."""
        longest_s = max(self.baseline_s, self.observe_s)
        if longest_s / self.step_s + 1 > 11_000:
            raise ValueError(
                f"a {longest_s:g} s window at step_s {self.step_s:g} is more "
                "than the detector's 11000 points a query: raise step_s"
            )
        return self

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "baseline_s": self.baseline_s,
            "observe_s": self.observe_s,
            "skip_s": self.skip_s,
            "step_s": self.step_s,
        }
        if self.selector is not None:
            doc["selector"] = self.selector
        if self.change_time is not None:
            doc["change_time"] = self.change_time
        if self.queries:
            doc["queries"] = [q.model_dump(exclude_none=True) for q in self.queries]
        return doc


def _summary(doc: dict[str, Any]) -> str:
    parts = []
    for q in doc.get("queries") or []:
        reasons = "; ".join(q.get("reasons") or [])
        parts.append(f"{q.get('name')}: {q.get('verdict')} ({reasons})")
    return " | ".join(parts)[:1500]


@action(
    "vigil.verify",
    params=VerifyParams,
    mutates=False,
    templates={"selector": Context.PROMQL_SELECTOR, "queries[].query": Context.VIGIL_QUERY},
    describe=lambda p: {"verify": p.body(), "expect": p.expect},
)
async def vigil_verify(ctx: ActionContext, p: VerifyParams) -> Outcome:
    status, doc = await ctx.services.detector("POST", "/api/v1/verify", p.body())
    if status != 200 or not isinstance(doc, dict) or "verdict" not in doc:
        return _status_failure(ctx, "POST /api/v1/verify", status, str(doc))
    verdict = doc["verdict"]
    detail = {
        "verdict": verdict,
        "expect": p.expect,
        "queries": [
            {k: q.get(k) for k in ("name", "verdict", "reasons")} for q in doc.get("queries") or []
        ],
    }
    if verdict != p.expect:
        return Failed(
            f"Vigil's verification says {verdict}, the step expects {p.expect}: {_summary(doc)}"
        )
    return Executed(detail)
