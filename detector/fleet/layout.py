"""The state directory of a service with several workers, and the guard against changing N.

With ``--workers N`` (N > 1) worker ``i`` checkpoints into ``<state-dir>/worker-<i>``
(the single-process layout, one level down), and ``<state-dir>/workers`` records N. Each
worker's checkpoint holds only the series its hash share names, so the same directory
started with another N would leave series on a worker that no longer owns them: their
learned state would be silently lost. ``check`` refuses that start instead, saying what
to do (start with the old N, or move the directory away); it does not re-partition.
"""

from __future__ import annotations

import re
from pathlib import Path

from detector.errors import ConfigError

WORKERS_FILE = "workers"
_WORKER_DIR = re.compile(r"worker-(\d+)")


def worker_dir(state_dir: Path, index: int) -> Path:
    """Where worker ``index`` checkpoints."""
    return state_dir / f"worker-{index}"


def recorded_workers(state_dir: Path) -> int | None:
    """The N the directory was written with: 1 for a single process's checkpoint, None
    when it holds no checkpoint at all."""
    marker = state_dir / WORKERS_FILE
    if marker.is_file():
        text = marker.read_text(encoding="utf-8").strip()
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(
                f"{marker}: expected the number of workers that wrote {state_dir}, found "
                f"{text[:40]!r}; fix or delete the file"
            )
        return int(text)
    indexes = [
        int(m.group(1)) for p in state_dir.glob("worker-*") if (m := _WORKER_DIR.fullmatch(p.name))
    ]
    if indexes:
        return max(indexes) + 1
    if (state_dir / "CURRENT").exists():
        return 1
    return None


def check(state_dir: Path, workers: int) -> None:
    """Refuse (ConfigError) to start ``workers`` workers on state written by another
    number; otherwise record ``workers`` (for N > 1) so the next start can tell."""
    found = recorded_workers(state_dir) if state_dir.is_dir() else None
    if found is not None and found != workers:
        raise ConfigError(
            f"--state-dir {state_dir} holds the checkpoints of {found} worker"
            f"{'' if found == 1 else 's'}, and each worker's checkpoint holds only its share "
            f"of the series: started with --workers {workers}, what they learned would be "
            f"lost. Start with --workers {found}, or move {state_dir} away to start afresh"
        )
    if workers > 1:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / WORKERS_FILE).write_text(f"{workers}\n", encoding="utf-8")
