"""``AuditThread``: every AuditLog call on one dedicated thread, awaited from the loop.

SQLite writes with ``synchronous=FULL`` take milliseconds (an fsync); they must not run on
the event loop, and the connection must have exactly one user. This module owns that hop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from remediator.audit.store import AuditLog

T = TypeVar("T")


class AuditThread:
    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-audit")

    async def run(self, fn: Callable[[AuditLog], T]) -> T:
        """``fn(log)`` on the audit thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self.log)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.log.close()
