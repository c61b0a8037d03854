"""RemediatorConfig: the YAML configuration of ``vigil-remediator serve``, validated at load.

This module owns the configuration models, ``load_config`` and the functions that read
documented environment overrides (``env_overrides`` for settings, ``read_tokens`` for the
two tokens) from the mapping ``__main__`` passes. It must not start anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from remediator.audit import retention
from remediator.catalog.playbook import FreezeWindow, RateLimit
from remediator.errors import ConfigError
from servicekit import yamlsrc
from servicekit.durations import Seconds
from servicekit.tls import OutgoingTLS, ServerTLS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthConfig(_Model):
    bearer_token_file: Path | None = Field(
        None,
        description="token Alertmanager must present on /webhook; VIGIL_REMEDIATOR_WEBHOOK_TOKEN overrides it",
    )
    admin_token_file: Path | None = Field(
        None,
        description="token for approve, pause and resume; none: those endpoints are refused; VIGIL_REMEDIATOR_ADMIN_TOKEN overrides it",
    )
    trusted_user_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$",
        description="e.g. X-Forwarded-User: set only behind a proxy that authenticates people and holds the admin token; a request with the admin token is then recorded as by that header's user (approvals, breaker resets, pause). None: as admin-token",
    )
    trusted_groups_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$",
        description="e.g. X-Forwarded-Groups (comma-separated): the groups of the trusted header's user, for playbooks' approvers; read only with trusted_user_header",
    )
    users_file: Path | None = Field(
        None,
        description="approvers' personal tokens: name -> SHA-256 of the token and groups (docs/approvals.md); they may approve and reject, nothing else",
    )
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="group -> user names, for playbooks' approvers.groups"
    )


class HttpConfig(_Model):
    allowed_urls: tuple[str, ...] = Field(
        (), description="URL prefixes http.request and notify may call"
    )


class GlobalGuards(_Model):
    rate: RateLimit | None = Field(
        RateLimit(max_runs=30, window_s=3600.0), description="runs that act, all playbooks together"
    )
    max_concurrent: int = Field(5, ge=1, le=1000)
    freeze: tuple[FreezeWindow, ...] = ()


class ClusterConfig(_Model):
    """Several replicas: leader election, target locks and shared state in one namespace."""

    namespace: str | None = Field(
        None,
        description="where the Leases and the state ConfigMap live; none: one replica, no leases",
    )
    identity: str | None = Field(
        None, description="this replica's name; default: the host name (POD_NAME in a pod)"
    )
    lease_name: str = "vigil-remediator-leader"
    lease_duration_s: Seconds = Field(
        15.0,
        ge=2.0,
        le=300.0,
        description="a leader that stops renewing loses the lease after this",
    )
    retry_s: Seconds = Field(2.0, gt=0, le=60.0)
    replay_s: Seconds = Field(
        900.0,
        ge=0,
        description="a new leader handles the notifications it recorded this long before",
    )


class DetectorLink(_Model):
    """Vigil's detector, for the ``vigil.verify`` step (its POST /api/v1/verify)."""

    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="e.g. http://vigil-detector.vigil.svc:9420; none: vigil.verify steps fail",
    )
    bearer_token_file: Path | None = Field(
        None, description="the detector's auth.bearer_token_file, when it has one"
    )
    timeout_s: Seconds = Field(
        60.0, gt=0, le=600, description="a verification reads many range queries"
    )


class AuditConfig(_Model):
    """Retention and body storage of the audit database (defaults justified in remediator/audit/retention.py)."""

    retention_s: Seconds = Field(
        retention.DEFAULT_RETENTION_S,
        gt=0,
        description="terminal runs, their events and notifications older than this are deleted (default 90 days)",
    )
    max_size_bytes: int = Field(
        retention.DEFAULT_MAX_SIZE_BYTES,
        ge=1 << 20,
        description="over this, older data goes first, down to the last hour (default 512 MiB; the cluster volume is 1 GiB)",
    )
    prune_interval_s: Seconds = Field(
        retention.DEFAULT_PRUNE_INTERVAL_S,
        ge=1.0,
        description="how often retention runs (and once at start)",
    )
    max_stored_body_bytes: int = Field(
        retention.DEFAULT_MAX_STORED_BODY_BYTES,
        ge=1024,
        description="a larger webhook body is stored reduced to its alerts, or truncated (not replayable)",
    )


class RemediatorConfig(_Model):
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    guards: GlobalGuards = GlobalGuards()
    secrets_dir: Path | None = Field(None, description="one file per secret named in playbooks")
    audit_path: Path | None = Field(None, description="SQLite file; default <state-dir>/audit.db")
    audit: AuditConfig = Field(
        AuditConfig(), description="retention, size cap and stored webhook bodies"
    )
    external_url: str | None = Field(
        None, description="how people reach this service (run links); default http://<listen>"
    )
    max_alerts_per_webhook: int = Field(1000, ge=1)
    max_body_bytes: int = Field(4 << 20, ge=1024)
    request_timeout_s: Seconds = Field(
        10.0, gt=0, description="calls to Alertmanager and Prometheus"
    )
    cluster: ClusterConfig = ClusterConfig()
    detector: DetectorLink = DetectorLink()
    tls: ServerTLS = Field(ServerTLS(), description="HTTPS (and mTLS) for the listener")
    outgoing_tls: OutgoingTLS = Field(
        OutgoingTLS(),
        description="trust for every https:// peer: Alertmanager, Prometheus, the detector, http.request and notify",
    )


def load_config(path: Path | None) -> RemediatorConfig:
    if path is None:
        return RemediatorConfig()
    try:
        return yamlsrc.load(path, RemediatorConfig)
    except yamlsrc.YamlSourceError as exc:
        raise ConfigError(str(exc)) from exc


def read_token(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"{what}: {path} is empty")
    return token


WEBHOOK_TOKEN_ENV = "VIGIL_REMEDIATOR_WEBHOOK_TOKEN"
ADMIN_TOKEN_ENV = "VIGIL_REMEDIATOR_ADMIN_TOKEN"


@dataclass(frozen=True, slots=True)
class Tokens:
    webhook: str | None  # POST /webhook
    admin: str | None  # approvals, pause/resume, breaker reset, reload

    def __repr__(self) -> str:  # never printed by accident
        return (
            f"Tokens(webhook={'set' if self.webhook else None}, "
            f"admin={'set' if self.admin else None})"
        )


def read_tokens(cfg: RemediatorConfig, env: Mapping[str, str]) -> Tokens:
    """The webhook and admin tokens: ``VIGIL_REMEDIATOR_WEBHOOK_TOKEN`` and
    ``VIGIL_REMEDIATOR_ADMIN_TOKEN`` in ``env`` win over ``auth.bearer_token_file`` and
    ``auth.admin_token_file``. A token never appears in an error."""

    def one(name: str, path: Path | None, what: str) -> str | None:
        return env.get(name, "").strip() or read_token(path, what)

    return Tokens(
        webhook=one(WEBHOOK_TOKEN_ENV, cfg.auth.bearer_token_file, "auth.bearer_token_file"),
        admin=one(ADMIN_TOKEN_ENV, cfg.auth.admin_token_file, "auth.admin_token_file"),
    )


def env_overrides(cfg: RemediatorConfig, env: Mapping[str, str]) -> RemediatorConfig:
    """``VIGIL_REMEDIATOR_EXTERNAL_URL`` overrides ``external_url``; ``POD_NAME`` (the
    downward API) gives ``cluster.identity`` when it is not set; nothing else."""
    url = env.get("VIGIL_REMEDIATOR_EXTERNAL_URL")
    if url:
        cfg = cfg.model_copy(update={"external_url": url})
    pod = env.get("POD_NAME")
    if pod and cfg.cluster.identity is None:
        cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"identity": pod})})
    return cfg
