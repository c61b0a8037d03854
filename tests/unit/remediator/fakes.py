"""Test doubles of the remediator's network clients (``actions.registry.Services``)."""

from __future__ import annotations

import asyncio
from typing import Any

from remediator.errors import ActionTemporaryError
from remediator.redaction import Redactor


class FakeServices:
    """Records every call; answers from small tables the test sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.bodies: list[Any] = []
        self.silences: list[dict] = []
        self.query_results: dict[str, list[dict]] = {}
        self.verdicts: list[tuple[int, Any]] = []  # answers of the detector, in order
        self.am_down = 0  # calls to fail with a connection error first
        self.called = asyncio.Event()
        self.redactor = Redactor()  # as LiveServices: the secrets it handed out are masked

    async def alertmanager(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append(("alertmanager", method, path))
        self.bodies.append(body)
        self.called.set()
        if self.am_down:
            self.am_down -= 1
            raise ActionTemporaryError("connection refused", delay_s=0.01)
        if method == "GET" and path == "/api/v2/silences":
            return 200, self.silences
        if method == "POST" and path == "/api/v2/silences":
            return 200, {"silenceID": f"s-{len(self.calls)}"}
        return 200, None

    async def detector(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append(("detector", method, path))
        self.bodies.append(body)
        return self.verdicts.pop(0) if self.verdicts else (503, {"error": "no answer set"})

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        self.calls.append(("prometheus", query))
        return self.query_results.get(query, [])

    async def http(self, method: str, url: str, *, headers, body, timeout_s) -> tuple[int, str]:
        self.calls.append(("http", method, url))
        self.bodies.append(body)
        return 200, "ok"

    def secret(self, name: str) -> str:
        value = f"secret-{name}"
        self.redactor.register(name, value)
        return value

    def redact(self, text: str) -> str:
        return self.redactor.text(text)

    def url_allowed(self, url: str) -> bool:
        return url.startswith("https://hooks.example/")

    def count(self, *prefix: str) -> int:
        return sum(1 for c in self.calls if c[: len(prefix)] == prefix)
