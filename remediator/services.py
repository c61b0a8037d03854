"""The network clients actions and guards use: Alertmanager, Prometheus, plain HTTP, and
the secrets directory. The I/O shell behind ``actions.registry.Services``.

Library errors are wrapped here: a connection failure or timeout is an
``ActionTemporaryError`` (worth retrying), anything else an ``ActionPermanentError``.
prometheus-api-client is synchronous, so its calls run in a thread with a timeout.
Redirects are never followed: a 3xx is the answer (the allow-list judged one URL).

Secrets: every value ``secret()`` reads, and the detector token, is registered with this
object's ``redaction.Redactor``; ``redact()`` masks them. Error messages made here are
already redacted, name a secret URL as ``<secret NAME>`` and other URLs without userinfo
or query, so they are safe to log, record and answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_api_client import PrometheusConnect

from remediator import redaction
from remediator.catalog import urls
from remediator.errors import ActionPermanentError, ActionTemporaryError, ConfigError
from servicekit import tls


class LiveServices:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        alertmanager_url: str | None,
        prometheus_url: str | None,
        secrets_dir: Path | None,
        allowed_urls: tuple[str, ...],
        timeout_s: float = 10.0,
        detector_url: str | None = None,
        detector_token: str | None = None,
        detector_timeout_s: float = 60.0,
        outgoing_tls: tls.OutgoingTLS | None = None,
        redactor: redaction.Redactor | None = None,
    ) -> None:
        """``redactor`` (None: a fresh one) may already hold the app's own tokens."""
        self.session = session
        self.redactor = redactor if redactor is not None else redaction.Redactor()
        self.redactor.register("detector token", detector_token)
        self.detector_url = detector_url.rstrip("/") if detector_url else None
        self.detector_token = detector_token
        self.detector_timeout_s = detector_timeout_s
        self.alertmanager_url = alertmanager_url.rstrip("/") if alertmanager_url else None
        self.prometheus_url = prometheus_url
        self.secrets_dir = secrets_dir
        self.allowed_urls = allowed_urls
        self.timeout_s = timeout_s
        # an https:// Prometheus is checked against outgoing_tls (default: the system's CAs)
        self._prom = (
            PrometheusConnect(
                url=prometheus_url,
                session=tls.build_requests_session(
                    outgoing_tls or tls.OutgoingTLS(), error=ConfigError
                ),
            )
            if prometheus_url
            else None
        )

    async def _request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any, timeout_s: float
    ) -> tuple[int, str]:
        try:
            # never followed: the allow-list judged this URL only, and a redirect would
            # carry its headers (secrets too) and body wherever the Location points
            async with self.session.request(
                method,
                url,
                headers=dict(headers),
                data=None if body is None else json.dumps(body),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # the library's text may repeat the URL (InvalidURL, redirects): it goes through
            # the redactor like the URL itself
            what = self.redactor.message(url)
            raise ActionTemporaryError(
                f"{method} {what}: {self.redactor.message(tls.explain(exc))}", delay_s=1.0
            ) from exc

    async def alertmanager(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.alertmanager_url is None:
            raise ActionPermanentError("no Alertmanager is configured (--alertmanager URL)")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, text = await self._request(
            method,
            self.alertmanager_url + path,
            headers=headers,
            body=body,
            timeout_s=self.timeout_s,
        )
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    async def detector(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A call to Vigil's detector API (the JSON answer, or its text if not JSON)."""
        if self.detector_url is None:
            raise ActionPermanentError(
                "no Vigil detector is configured (detector.url in the remediator config)"
            )
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.detector_token:
            headers["Authorization"] = f"Bearer {self.detector_token}"
        status, text = await self._request(
            method,
            self.detector_url + path,
            headers=headers,
            body=body,
            timeout_s=self.detector_timeout_s,
        )
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        if self._prom is None:
            raise ActionPermanentError("no Prometheus is configured (--prometheus URL)")
        prom = self._prom
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await asyncio.to_thread(prom.custom_query, query)
        except TimeoutError as exc:
            raise ActionTemporaryError(
                f"PromQL {query!r}: no answer within {self.timeout_s:.0f} s"
            ) from exc
        except Exception as exc:  # the library raises bare Exception subclasses of its own
            raise ActionPermanentError(
                f"PromQL {query!r}: {self.redactor.message(tls.explain(exc))}"
            ) from exc
        return list(result) if isinstance(result, list) else []

    async def http(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any, timeout_s: float
    ) -> tuple[int, str]:
        merged = (
            {"Content-Type": "application/json", **headers} if body is not None else dict(headers)
        )
        return await self._request(method, url, headers=merged, body=body, timeout_s=timeout_s)

    def secret(self, name: str) -> str:
        """The secret file's content; registered with the redactor before it is returned,
        so no message can show it from then on."""
        if self.secrets_dir is None:
            raise ActionPermanentError(f"secret {name!r}: no secrets_dir is configured")
        path = self.secrets_dir / name
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ActionPermanentError(
                f"secret {name!r}: cannot read {path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        self.redactor.register(name, value)
        return value

    def redact(self, text: str) -> str:
        """``text`` with every secret this object has read (and the tokens) masked."""
        return self.redactor.text(text)

    def url_allowed(self, url: str) -> bool:
        """Under an allow-listed prefix: same scheme, host and port, the path at or below
        the prefix's once dot segments are resolved; never with userinfo (``urls``)."""
        return urls.allowed(url, self.allowed_urls)
