"""A config reload of the detector's registry at scale: how long the per-series decisions
take (made without the ingest lock: requests go on) and how long the part under the lock
holds new-series requests (the series created meanwhile and the index rebuild).

Half the series are under a rule whose detector changes in the new config (they start
fresh), the other half keep their state. With ``--untracked`` the old config tracks only
those, so the other half is remembered as untracked and the reload rebuilds both indexes
to forget them (the slow case under the lock); without it every series is tracked and the
indexes are kept in place. No network, no clock but perf_counter.

Usage: python bench/reload.py [--series 200000] [--untracked]
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.config import DetectorConfig  # noqa: E402
from detector.remote_write import decode, encode  # noqa: E402
from detector.series.registry import SeriesRegistry  # noqa: E402

OLD = {
    "series": [
        {"name": "api", "match": '{job="api"}', "detector": {"kind": "robust"}},
        {"name": "rest"},
    ]
}
NEW = {
    "series": [
        {"name": "api", "match": '{job="api"}', "detector": {"kind": "robust", "alpha": 0.1}},
        {"name": "rest"},
    ]
}
CHUNK = 5000


def _registry(n: int, *, untracked: bool) -> SeriesRegistry:
    cfg = DetectorConfig.model_validate({"series": OLD["series"][:1]} if untracked else OLD)
    registry = SeriesRegistry(cfg)
    for start in range(0, n, CHUNK):
        raw = encode.encode_v1(
            [
                encode.Series(
                    labels=(
                        ("__name__", "http_requests_total"),
                        ("instance", f"i{i}"),
                        ("job", "api" if i % 2 else "web"),
                    ),
                    samples=[(1, 1.0)],
                )
                for i in range(start, min(n, start + CHUNK))
            ]
        )
        registry.resolve(decode.decode_request(np.frombuffer(raw, np.uint8), 1))
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=200_000)
    parser.add_argument(
        "--untracked", action="store_true", help="the old config leaves half the series untracked"
    )
    args = parser.parse_args()
    registry = _registry(args.series, untracked=args.untracked)
    new = DetectorConfig.model_validate(NEW)
    start = time.perf_counter()
    draft = registry.draft_reconfigure(new)
    drafted = time.perf_counter()
    plan = registry.reconfigure(new, draft)
    applied = time.perf_counter()
    figures = {
        "series": args.series,
        "untracked": args.untracked,
        "draft_s": round(drafted - start, 4),
        "locked_s": round(applied - drafted, 4),
        "series_reset": len(plan.reset),
        "series_kept": plan.kept,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(
        f"{args.series:,} series: decided in {figures['draft_s']:.3f} s without the "
        f"ingest lock, applied in {figures['locked_s']:.3f} s under it "
        f"({figures['series_reset']:,} start fresh, {figures['series_kept']:,} keep their "
        "state)",
        flush=True,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
