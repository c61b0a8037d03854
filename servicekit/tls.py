"""TLS: the serving certificate (and client-certificate check), and the trust every
outgoing connection uses.

This module owns the two configuration sections (``tls`` and ``outgoing_tls``) and turns
them into ``ssl.SSLContext`` objects and a ``requests`` session for prometheus-api-client.
It reads certificate files only when asked to build; it must not open connections. An
unreadable or mismatched file raises the error class the calling service passes in (its
``ConfigError``), with a message naming the setting.

Both services use it; like all of servicekit it imports neither.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import requests
from pydantic import BaseModel, ConfigDict, Field, model_validator

CA_SETTING = "outgoing_tls.ca_file"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerTLS(_Model):
    """HTTPS for this service's listener; with ``client_ca_file``, mutual TLS."""

    cert_file: Path | None = Field(
        None, description="PEM certificate chain served; none: plain HTTP"
    )
    key_file: Path | None = Field(None, description="PEM private key of cert_file")
    client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle; set: every client must present a certificate it signed (mTLS)",
    )

    @model_validator(mode="after")
    def _pairs(self) -> ServerTLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file needs cert_file and key_file (mTLS is TLS first)")
        return self


class OutgoingTLS(_Model):
    """How this service checks the servers it calls over https:// (and proves who it is)."""

    ca_file: Path | None = Field(
        None, description="PEM CA bundle trusted for https:// peers; none: the system's trust store"
    )
    insecure_skip_verify: bool = Field(
        False, description="do not check peers' certificates at all (tests only; logged at start)"
    )
    client_cert_file: Path | None = Field(
        None, description="PEM certificate presented to peers that ask (their mTLS)"
    )
    client_key_file: Path | None = Field(None, description="PEM private key of client_cert_file")

    @model_validator(mode="after")
    def _pair(self) -> OutgoingTLS:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        return self


def _load_chain(
    ctx: ssl.SSLContext, cert: Path, key: Path, what: str, *, error: type[Exception]
) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise error(
            f"{what}: cannot load the certificate {cert} with the key {key}: "
            f"{exc} (both PEM files, readable, and the key must match the "
            "certificate)"
        ) from exc


def _load_ca(ctx: ssl.SSLContext, path: Path, what: str, *, error: type[Exception]) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise error(
            f"{what}: cannot load the CA bundle {path}: {exc} (a readable "
            "PEM file of CA certificates)"
        ) from exc


def build_server_context(cfg: ServerTLS, *, error: type[Exception]) -> ssl.SSLContext | None:
    """The listener's context, or None (plain HTTP) when no certificate is configured;
    ``error`` (the service's configuration error) if a file cannot be loaded."""
    if cfg.cert_file is None or cfg.key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cfg.cert_file, cfg.key_file, "tls.cert_file/tls.key_file", error=error)
    if cfg.client_ca_file is not None:
        _load_ca(ctx, cfg.client_ca_file, "tls.client_ca_file", error=error)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def build_client_context(cfg: OutgoingTLS, *, error: type[Exception]) -> ssl.SSLContext:
    """The context of every outgoing aiohttp connection (used for https:// URLs only);
    ``error`` (the service's configuration error) if a file cannot be loaded."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.ca_file is not None:
        _load_ca(ctx, cfg.ca_file, CA_SETTING, error=error)
    if cfg.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.client_cert_file is not None and cfg.client_key_file is not None:
        _load_chain(
            ctx,
            cfg.client_cert_file,
            cfg.client_key_file,
            "outgoing_tls.client_cert_file/client_key_file",
            error=error,
        )
    return ctx


def build_requests_session(cfg: OutgoingTLS, *, error: type[Exception]) -> requests.Session:
    """A requests session (prometheus-api-client) with the same trust as the aiohttp one;
    ``error`` (the service's configuration error) if the CA file cannot be loaded."""
    if cfg.ca_file is not None:  # fail at start, not at the first query
        _load_ca(ssl.create_default_context(), cfg.ca_file, CA_SETTING, error=error)
    session = requests.Session()
    session.verify = (
        False
        if cfg.insecure_skip_verify
        else (str(cfg.ca_file) if cfg.ca_file is not None else True)
    )
    if cfg.client_cert_file is not None and cfg.client_key_file is not None:
        session.cert = (str(cfg.client_cert_file), str(cfg.client_key_file))
    return session


def explain(exc: BaseException) -> str:
    """``exc`` as text; a certificate the configured CA does not vouch for says what to set."""
    text = f"{type(exc).__name__}: {exc}"
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain of requests/urllib3 is a few links deep
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return (
                f"{text} (the server's certificate is not signed by a trusted CA: set "
                f"{CA_SETTING} to the CA bundle that signed it)"
            )
        seen = seen.__cause__ or seen.__context__
    return text
