"""Coverage-guided fuzzing (atheris, libFuzzer) of Vigil's three parsers of outside input.

Targets, and what each may answer (``tests/property/hostile.py`` defines both, and the
test suite runs its seeded mutations of the same corpora):

- ``remote_write``: snappy → wire scan → series registry (``Ingestor``), default and tight
  limits; only ``DecodeError`` (HTTP 400/413/415). The first input byte picks 1.0 or 2.0
  and whether the rest is compressed here (protobuf mutations) or sent as is (snappy ones).
- ``webhook``: ``parse_notification``; only ``WebhookError`` (HTTP 400).
- ``playbook``: ``load_catalog`` on one file; only problems shaped ``file:line: path: message``.

Each target runs in its own process for ``--seconds`` (libFuzzer's ``-max_total_time``),
seeded with the corpora, with a per-input timeout (``-timeout``) and an RSS limit
(``-rss_limit_mb``) so hangs and unbounded memory count as crashes too. Python code of
``detector`` and ``remediator`` is instrumented; the numba scan is compiled, so its
branches steer nothing (the seeded mutations cover it instead). Crashing inputs are kept
in the work directory. Prints one line per target and, last, one JSON object.

Usage: python bench/fuzz.py [--targets remote_write,webhook,playbook] [--seconds 60]
       [--runs N] [--workdir DIR]
Needs the ``fuzz`` extra: pip install -e '.[fuzz]'.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("remote_write", "webhook", "playbook")
MAX_LEN = {"remote_write": 65536, "webhook": 65536, "playbook": 16384}
RSS_LIMIT_MB = 1536
TIMEOUT_S = 10


# ------------------------------------------------------------------------ child process


def _child(target: str, args: list[str]) -> None:
    import importlib

    import atheris

    # numba compiles these from their bytecode, which instrumentation would change: they
    # are imported first, plain, and instrument_imports leaves loaded modules alone
    for name in (
        "detector.pipeline._sample_rules",
        "detector.series._index",
        "detector.alerting._state_kernel",
        "detector.remote_write._wire",
        "detector.detectors._kernels.calibration",
        "detector.detectors._kernels.ensemble",
        "detector.detectors._kernels.tail",
        "detector.detectors._kernels.robust",
    ):
        importlib.import_module(name)
    with atheris.instrument_imports(include=["detector", "remediator", "servicekit"]):
        import detector.pipeline.ingest
        import detector.remote_write.decode
        import detector.series.registry  # noqa: F401
        import remediator.catalog.loader
        import remediator.webhook  # noqa: F401
        import servicekit.yamlsrc  # noqa: F401
    from detector.remote_write import encode
    from remediator.app import build_registry
    from tests.property import hostile

    one: Callable[[bytes], None]
    if target == "remote_write":
        rw = hostile.RemoteWriteTarget()

        def one(data: bytes) -> None:
            if not data:
                return
            version = 1 + (data[0] & 1)
            body = encode.compress(data[1:]) if data[0] & 2 else data[1:]
            rw(body, version)
    elif target == "webhook":
        one = hostile.WebhookTarget()
    else:
        pb = hostile.PlaybookTarget(build_registry())

        def one(data: bytes) -> None:
            pb(data)

    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()


def _write_seeds(target: str, seeds: Path) -> None:
    import random

    from tests.property import hostile

    seeds.mkdir(parents=True, exist_ok=True)
    if target == "remote_write":
        docs = [bytes([2 | (version - 1)]) + raw for version, raw in hostile.remote_write_corpus(1)]
    elif target == "webhook":
        rng = random.Random(1)
        docs = [json.dumps(d).encode() for d in hostile.webhook_corpus()]
        docs += [
            json.dumps(hostile.mutate_json(rng, d)).encode()
            for d in hostile.webhook_corpus()
            for _ in range(20)
        ]
    else:
        docs = [text.encode() for text in hostile.playbook_corpus()]
    for i, doc in enumerate(docs):
        (seeds / f"seed-{i:04}").write_bytes(doc[: MAX_LEN[target]])


# ------------------------------------------------------------------------ parent process


def run_target(target: str, *, seconds: int, runs: int | None, workdir: Path) -> dict:
    base = workdir / target
    seeds, corpus, crashes = base / "seeds", base / "corpus", base / "crashes"
    for d in (corpus, crashes):
        d.mkdir(parents=True, exist_ok=True)
    _write_seeds(target, seeds)
    flags = [
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN[target]}",
        f"-timeout={TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
    ]
    if runs is not None:
        flags.append(f"-runs={runs}")
    argv = [sys.executable, __file__, "--child", target, "--", *flags, str(corpus), str(seeds)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=base)
    wall = time.perf_counter() - t0
    (base / "fuzz.log").write_text(proc.stdout + proc.stderr)
    log = proc.stderr
    execs = _last_int(r"stat::number_of_executed_units:\s*(\d+)", log)
    speed = _last_int(r"stat::average_exec_per_sec:\s*(\d+)", log)
    cov = _last_int(r"\bcov: (\d+)", log)
    found = sorted(p.name for p in crashes.iterdir())
    return {
        "target": target,
        "execs": execs,
        "execs_per_s": speed,
        "coverage": cov,
        "crashes": len(found),
        "crash_files": [str(crashes / f) for f in found],
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "corpus_files": sum(1 for _ in corpus.iterdir()),
    }


def _last_int(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keeps corpora and crashes (default: a temp dir)"
    )
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-fuzz-"))

    results = []
    for target in targets:
        r = run_target(target, seconds=args.seconds, runs=args.runs, workdir=workdir)
        results.append(r)
        print(
            f"{target:13} {r['execs']:>9} execs  {r['execs_per_s']:>6}/s  "
            f"cov {r['coverage']:>5}  crashes {r['crashes']}  "
            f"(exit {r['exit_code']}, {r['wall_s']} s)",
            flush=True,
        )
        for path in r["crash_files"]:
            print(f"  crash input: {path}  (log: {workdir / target / 'fuzz.log'})")
    summary = {
        "bench": "fuzz",
        "seconds_per_target": args.seconds,
        "workdir": str(workdir),
        "python": platform.python_version(),
        "atheris": importlib.metadata.version("atheris"),
        "cpu": platform.processor() or platform.machine(),
        "targets": {r["target"]: {k: v for k, v in r.items() if k != "target"} for r in results},
        "total_crashes": sum(r["crashes"] for r in results),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
