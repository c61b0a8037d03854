"""Remote-write ingestion throughput: Vigil (with its detector on every sample) against
Debian's VictoriaMetrics and Prometheus receivers, on the same bodies, in the same run.

Bodies: N series (10k and 100k) with 10 labels each, 2,000 series per request, one sample
per series per request, snappy. Every receiver is pinned to CPU 0 (Go receivers also get
GOMAXPROCS=1); the load generator (bench/loadgen.py: pre-built requests over keep-alive raw
sockets, ~0.03-0.07 CPU-s per 1M samples) runs as a separate process on CPU 1 with one
connection per group of series, so each series' samples arrive in time order. The first
round (series creation, timed separately) and the next 30 (the detectors' warm-up) are
sent untimed for every receiver; the timed part is the steady state that follows.

For Vigil the clock stops when its detectors have processed every sample (HTTP 204 only
means queued), so its figure is end-to-end. Prints a table, the ratios, and as its last
line one JSON object with every figure.

--profile starts Vigil with ``--profile-stages`` and adds, for the timed phase, the CPU
seconds per 1M samples of each ingest stage (``vigil_profile_stage_cpu_seconds_total``:
thread CPU time lapped at each stage boundary, see detector/stages.py); ``other`` is the
process's CPU time that no stage holds (threads that do not lap, the interpreter).
``--only`` may name ``vigil-asyncio`` too: Vigil on asyncio's event loop instead of uvloop;
and ``vigil-baseline``: the Vigil whose source tree ``--baseline-src`` names (e.g.
``git archive <commit> | tar -x -C DIR``), on PYTHONPATH, to compare two versions in one run.
Usage: python bench/ingest.py [--sizes 10000,100000] [--samples 1500000] [--only vigil,...]
       [--profile]
VIGIL_BENCH_EXTRA (YAML text) is appended to Vigil's config, e.g. to try another detector.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from detector.remote_write.encode import delimited, label_fields, varint  # noqa: E402
from tests.integration.procs import free_port, process, wait_until  # noqa: E402

SERIES_PER_REQUEST = 2000
# rounds sent untimed after the first: the default detector's warm-up (it scores nothing
# until then, which is cheaper than the steady state being measured)
WARMUP_ROUNDS = 30
CONNECTIONS = 4
HEADERS = dict(loadgen.HEADERS)  # bench/alert_latency.py sends them too


def _label_bytes(i: int) -> bytes:
    labels = [
        ("__name__", f"http_requests_total_{i % 50}"),
        ("cluster", "prod-eu-1"),
        ("code", ("200", "404", "500")[i % 3]),
        ("container", f"app-{i % 97}"),
        ("endpoint", "http-metrics"),
        ("instance", f"10.0.{(i // 250) % 256}.{i % 250}:8080"),
        ("job", f"service-{i % 37}"),
        ("method", ("GET", "POST")[i % 2]),
        ("namespace", f"team-{i % 13}"),
        ("pod", f"app-{i % 97}-{i:08x}"),
    ]
    return label_fields(labels)


def build_bodies(n_series: int, rounds: int, start_ms: int) -> list[list[bytes]]:
    """bodies[chunk][round]: the request for series chunk ``chunk`` at round ``round``."""
    labels = [_label_bytes(i) for i in range(n_series)]
    chunks = []
    for c0 in range(0, n_series, SERIES_PER_REQUEST):
        per_round = []
        for r in range(rounds):
            ts = varint(start_ms + r * 1000)
            parts = []
            for i in range(c0, min(c0 + SERIES_PER_REQUEST, n_series)):
                value = 100.0 + (i % 17) + ((r * 7 + i) % 11) * 0.5
                sample = b"\x09" + struct.pack("<d", value) + b"\x10" + ts
                parts.append(delimited(1, labels[i] + delimited(2, sample)))
            per_round.append(bytes(cramjam.snappy.compress_raw(b"".join(parts))))
        chunks.append(per_round)
    return chunks


# ---------------------------------------------------------------- load generator process


@dataclass(frozen=True)
class Placement:
    """Where the receiver and the load generator run. The default: the receiver on CPU 0
    (Go receivers with GOMAXPROCS=1), the loader on CPU 1. ``--workers N``: everything on
    every core (GOMAXPROCS=N), the loader included, and Vigil's N-worker service."""

    receiver_cpus: str = "0"
    loader_cpus: str = "1"
    gomaxprocs: int = 1
    connections: int = CONNECTIONS
    workers: int = 1


def run_loader(
    url: str, bodies_file: Path, first: int, last: int, placement: Placement = Placement()
) -> dict[str, float]:
    """Run the load generator in its own process pinned to ``placement.loader_cpus``; its
    result gains the loader's CPU seconds (``loader_cpu_s``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        _loader_argv(url, bodies_file, first, last, placement),
        check=True,
        capture_output=True,
        text=True,
    )
    return _loader_result(out.stdout, before)


def _loader_argv(
    url: str,
    bodies_file: Path,
    first: int,
    last: int,
    placement: Placement,
    pause: int | None = None,
) -> list[str]:
    """The load generator's command line, pinned to ``placement.loader_cpus``."""
    argv = ["taskset", "-c", placement.loader_cpus, sys.executable, __file__, "--loader"]
    argv += [url, str(bodies_file), str(first), str(last), str(placement.connections)]
    return argv if pause is None else [*argv, str(pause)]


def _loader_result(stdout: str, before: resource.struct_rusage) -> dict[str, Any]:
    """The loader's last JSON line, with its CPU while it sent (what competes with the
    receiver: ``loader_cpu_s``) and its whole process's (start-up, reading and framing
    the bodies, before the clock starts: ``loader_process_cpu_s``)."""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["loader_cpu_s"] = result.pop("cpu_s")
    result["loader_process_cpu_s"] = (after.ru_utime + after.ru_stime) - (
        before.ru_utime + before.ru_stime
    )
    return result


class LoaderPhases:
    """The load generator over rounds ``first..pause`` (untimed), paused until
    ``resume``, then ``pause..last`` (timed), in one process over the same connections.
    ``resume`` returns the timed part's result, with ``loader_cpu_s`` as ``run_loader``."""

    def __init__(
        self, url: str, bodies_file: Path, first: int, pause: int, last: int, placement: Placement
    ) -> None:
        self.argv = _loader_argv(url, bodies_file, first, last, placement, pause)
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> LoaderPhases:
        self.before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def wait_paused(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited early ({self.proc.wait()})")
        warm: dict[str, Any] = json.loads(line)
        return warm

    def resume(self) -> dict[str, Any]:
        assert self.proc is not None
        out, _ = self.proc.communicate("go\n")
        if self.proc.returncode:
            raise RuntimeError(f"the load generator failed ({self.proc.returncode})")
        return _loader_result(out, self.before)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- receivers


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a --workers supervisor's workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out.extend(_tree(child))
    return out


def _cpu_s(pid: int) -> float:
    """utime + stime of a process and its descendants, all their threads included."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _peak_rss_mb(pid: int) -> float:
    """Peak RSS of a process and its descendants, summed."""
    total = 0.0
    for p in _tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def receiver_argv(
    name: str,
    port: int,
    workdir: Path,
    *,
    profile: bool = False,
    baseline_src: Path | None = None,
    placement: Placement = Placement(),
) -> tuple[list[str], str, str, dict[str, str]]:
    """argv, write URL, readiness URL, extra environment."""
    base = f"http://127.0.0.1:{port}"
    gomaxprocs = {"GOMAXPROCS": str(placement.gomaxprocs)}
    if name in ("vigil", "vigil-asyncio", "vigil-baseline", "vigil-workers"):
        env = {}
        if name == "vigil-baseline":
            if baseline_src is None:
                raise ValueError("vigil-baseline needs --baseline-src")
            env["PYTHONPATH"] = str(baseline_src.resolve())
        cfg = workdir / "vigil.yaml"
        cfg.write_text("limits:\n  max_series: 2000000\n" + os.environ.get("VIGIL_BENCH_EXTRA", ""))
        return (
            [
                sys.executable,
                "-m",
                "detector",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--config",
                str(cfg),
                "--log-level",
                "WARNING",
                "--event-loop",
                "asyncio" if name == "vigil-asyncio" else "uvloop",
                *(["--profile-stages"] if profile else []),
                *(["--workers", str(placement.workers)] if name == "vigil-workers" else []),
            ],
            f"{base}/api/v1/write",
            f"{base}/readyz",
            env,
        )
    if name == "victoriametrics":
        return (
            [
                shutil.which("victoria-metrics") or "victoria-metrics",
                f"-storageDataPath={workdir / 'vm'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=1",
                "-loggerLevel=ERROR",
            ],
            f"{base}/api/v1/write",
            f"{base}/health",
            gomaxprocs,
        )
    if name == "prometheus":
        conf = workdir / "prom.yml"
        conf.write_text("global: {}\n")
        return (
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={conf}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-remote-write-receiver",
                "--log.level=error",
            ],
            f"{base}/api/v1/write",
            f"{base}/-/ready",
            gomaxprocs,
        )
    raise ValueError(name)


def measure(
    name: str,
    bodies_file: Path,
    n_series: int,
    rounds: int,
    untimed: int,
    *,
    profile: bool = False,
    baseline_src: Path | None = None,
    placement: Placement = Placement(),
) -> dict[str, Any]:
    """Send ``untimed`` rounds (first sight, then the detectors' warm-up), then time the
    rest."""
    port = free_port()
    vigil = name.startswith("vigil")
    profile = profile and vigil
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        argv, url, ready, env = receiver_argv(
            name, port, workdir, profile=profile, baseline_src=baseline_src, placement=placement
        )
        cpus = placement.receiver_cpus
        with process(
            name, ["taskset", "-c", cpus, *argv], workdir, ready_url=ready, timeout_s=180, env=env
        ) as proc:
            create = run_loader(url, bodies_file, 0, 1, placement)  # first sight of every series
            base = url.replace("/api/v1/write", "")
            # the warm-up and the timed rounds over the same connections: with --workers,
            # the kernel spreads connections over the workers, and fresh ones for the timed
            # part would make a worker see another worker's series for the first time
            # there (a label parse each, in Python), which is not the steady state
            with LoaderPhases(url, bodies_file, 1, untimed, rounds, placement) as loader:
                loader.wait_paused()
                lag0 = _loop_lag_histogram(base) if vigil else None
                stages0 = _stage_seconds(base) if profile else None
                cpu0 = _cpu_s(proc.pid)
                timed = loader.resume()
                cpu1 = _cpu_s(proc.pid)
            samples = n_series * (rounds - untimed)
            result: dict[str, Any] = {
                "samples": samples,
                "samples_per_s": samples / timed["wall_s"],
                "cpu_s_per_million": (cpu1 - cpu0) / samples * 1e6,
                "peak_rss_mb": _peak_rss_mb(proc.pid),
                "create_s": create["wall_s"],
                "codes": timed["codes"],
                "loader_cpu_s_per_million": timed["loader_cpu_s"] / samples * 1e6,
            }
            if lag0 is not None:
                # Vigil queues samples for its detector thread: count the time until the
                # detectors have processed every sample, not only until the HTTP 204s
                t_drain = time.perf_counter()
                result["accepted"] = _vigil_accepted(base, n_series * rounds)
                drain_s = time.perf_counter() - t_drain
                cpu1 = _cpu_s(proc.pid)
                result["drain_s"] = drain_s
                result["samples_per_s"] = samples / (timed["wall_s"] + drain_s)
                result["cpu_s_per_million"] = (cpu1 - cpu0) / samples * 1e6
                result.update(_loop_lag(lag0, _loop_lag_histogram(base)))
                if placement.workers > 1 and name == "vigil-workers":
                    result["requests_by_worker"] = _by_worker(
                        base, "vigil_remote_write_requests_total"
                    )
                    result["shares_by_worker"] = _by_worker(base, "vigil_fleet_shares_sent_total")
            if stages0 is not None:
                result["profile"] = _profile(stages0, _stage_seconds(base), cpu1 - cpu0, samples)
            return result


def _stage_seconds(base: str) -> dict[str, float]:
    """Vigil's CPU seconds per ingest stage so far (serve --profile-stages)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("vigil_profile_stage_cpu_seconds_total{"):
                stage = line.split('stage="')[1].split('"')[0]
                out[stage] = out.get(stage, 0.0) + float(line.split()[-1])  # every worker
    if not out:
        raise RuntimeError("no vigil_profile_stage_cpu_seconds_total: was --profile-stages on?")
    return out


def _profile(
    before: dict[str, float], after: dict[str, float], cpu_s: float, samples: int
) -> dict[str, float]:
    """CPU seconds per 1M samples of each stage in the timed phase; ``other`` is the
    process CPU no stage holds, ``total`` the process CPU."""
    per_m = {stage: (after[stage] - before[stage]) / samples * 1e6 for stage in after}
    per_m["other"] = cpu_s / samples * 1e6 - sum(per_m.values())
    per_m["total"] = cpu_s / samples * 1e6
    return per_m


def print_profile(n_series: int, prof: dict[str, float]) -> None:
    total = prof["total"]
    print(f"{n_series:>7} series  vigil CPU-seconds per 1M samples, by stage:")
    for stage, value in prof.items():
        share = f"{100 * value / total:5.1f} %" if stage != "total" else ""
        print(f"          {stage:<16} {value:6.3f}  {share}", flush=True)


def _vigil_accepted(base: str, expected: int) -> float:
    """Wait for the detector queue to drain; return samples accepted by the detectors."""

    def accepted() -> float:
        total = 0.0
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():  # one line a worker (--workers)
                if line.startswith(
                    ("vigil_samples_accepted_total ", "vigil_samples_accepted_total{")
                ):
                    total += float(line.split()[-1])
        return total

    try:
        wait_until("vigil drained", lambda: accepted() >= expected, timeout_s=120, interval_s=0.01)
    except TimeoutError:
        pass
    return accepted()


LagHistogram = tuple[list[tuple[float, float]], float, float]


def _loop_lag_histogram(base: str) -> LagHistogram:
    """Vigil's event-loop lag histogram (a 100 ms timer): buckets, sum, count."""
    by_le: dict[float, float] = {}
    total = count = 0.0
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():  # summed over workers (--workers)
            if line.startswith("vigil_event_loop_lag_seconds_bucket"):
                le = float(line.split('le="')[1].split('"')[0])
                by_le[le] = by_le.get(le, 0.0) + float(line.split()[-1])
            elif line.startswith("vigil_event_loop_lag_seconds_sum"):
                total += float(line.split()[-1])
            elif line.startswith("vigil_event_loop_lag_seconds_count"):
                count += float(line.split()[-1])
    return sorted(by_le.items()), total, count


def _by_worker(base: str, name: str) -> dict[str, float]:
    """A counter of a --workers service summed per worker."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + "{") and 'worker="' in line:
                worker = line.split('worker="')[1].split('"')[0]
                out[worker] = out.get(worker, 0.0) + float(line.split()[-1])
    return out


def _loop_lag(before: LagHistogram, after: LagHistogram) -> dict[str, float]:
    """Lag during the timed (steady-state) phase: mean, and the bucket holding p99/max."""
    count = after[2] - before[2]
    total = after[1] - before[1]
    diff = [(le, n - m) for (le, n), (_, m) in zip(after[0], before[0], strict=True)]
    worst = next((le for le, n in diff if n >= count), float("inf"))
    p99 = next((le for le, n in diff if n >= 0.99 * count), float("inf"))
    return {
        "loop_lag_ticks": count,
        "loop_lag_mean_ms": 1000 * total / max(count, 1),
        "loop_lag_p99_le_ms": 1000 * p99,
        "loop_lag_max_le_ms": 1000 * worst,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loader":
        url, path, first, last = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        connections = int(sys.argv[6]) if len(sys.argv) > 6 else CONNECTIONS
        # with a 7th argument: rounds first..pause untimed, then a line on stdout, a line
        # from stdin, and pause..last timed, over the same connections
        pause = int(sys.argv[7]) if len(sys.argv) > 7 else None
        chunks = pickle.loads(path.read_bytes())

        def report(done: loadgen.LoadResult) -> None:
            codes = {str(k): v for k, v in sorted(done.codes.items())}
            print(json.dumps({"wall_s": done.wall_s, "cpu_s": done.cpu_s, "codes": codes}))
            sys.stdout.flush()

        def wait_for_go(_: int, done: loadgen.LoadResult) -> None:
            report(done)
            sys.stdin.readline()

        if pause is None:
            report(loadgen.load(url, chunks, [range(first, last)], connections)[-1])
        else:
            phases = [range(first, pause), range(pause, last)]
            report(loadgen.load(url, chunks, phases, connections, wait_for_go)[-1])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument(
        "--samples", type=int, default=1_500_000, help="timed samples per receiver and size"
    )
    parser.add_argument(
        "--only",
        help="default vigil,victoriametrics,prometheus; with "
        "--workers: vigil,vigil-workers,victoriametrics",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run Vigil's N-worker service (vigil-workers); every receiver and the "
        "loader then share every core, Go receivers get GOMAXPROCS=N",
    )
    parser.add_argument(
        "--connections",
        type=int,
        help=f"loader connections (default {CONNECTIONS}; 8 with --workers)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="CPU seconds per 1M samples of each Vigil ingest stage",
    )
    parser.add_argument(
        "--baseline-src", type=Path, help="source tree of the Vigil that --only vigil-baseline runs"
    )
    args = parser.parse_args()
    placement = Placement(connections=args.connections or CONNECTIONS)
    only = args.only or "vigil,victoriametrics,prometheus"
    if args.workers > 1:
        n_cpus = os.cpu_count() or 1
        every = f"0-{n_cpus - 1}" if n_cpus > 1 else "0"
        placement = Placement(
            receiver_cpus=every,
            loader_cpus=every,
            gomaxprocs=args.workers,
            connections=args.connections or 8,
            workers=args.workers,
        )
        only = args.only or "vigil,vigil-workers,victoriametrics"
    receivers = only.split(",")
    figures: dict[str, object] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "series_per_request": SERIES_PER_REQUEST,
        "placement": placement.__dict__,
        "labels_per_series": 10,
    }
    rows = []
    for n_series in (int(s) for s in args.sizes.split(",")):
        untimed = 1 + WARMUP_ROUNDS
        rounds = untimed + max(2, args.samples // n_series)
        start_ms = int(time.time() * 1000) - rounds * 1000
        t0 = time.perf_counter()
        chunks = build_bodies(n_series, rounds, start_ms)
        build_s = time.perf_counter() - t0
        with tempfile.NamedTemporaryFile(prefix="bench-bodies-", delete=False) as fh:
            fh.write(pickle.dumps(chunks))
            bodies_file = Path(fh.name)
        try:
            size = {
                "build_s": build_s,
                "rounds": rounds,
                "mean_body_bytes": sum(len(b) for c in chunks for b in c)
                / sum(len(c) for c in chunks),
            }
            for name in receivers:
                size[name] = measure(
                    name,
                    bodies_file,
                    n_series,
                    rounds,
                    untimed,
                    profile=args.profile,
                    baseline_src=args.baseline_src,
                    placement=placement,
                )
                r = size[name]
                rows.append(
                    (n_series, name, r["samples_per_s"], r["cpu_s_per_million"], r["peak_rss_mb"])
                )
                lag = (
                    f"  loop lag mean {r['loop_lag_mean_ms']:.2f} ms, p99 <= "
                    f"{r['loop_lag_p99_le_ms']:g} ms"
                    if name.startswith("vigil")
                    else ""
                )
                print(
                    f"{n_series:>7} series  {name:<16} {r['samples_per_s']:>12,.0f} samples/s"
                    f"  {r['cpu_s_per_million']:6.2f} CPU s/M  {r['peak_rss_mb']:8.1f} MB peak"
                    f"  loader {r['loader_cpu_s_per_million']:.2f} CPU s/M"
                    f"  codes={r['codes']}{lag}",
                    flush=True,
                )
                if "profile" in r:
                    print_profile(n_series, r["profile"])
            if "vigil-workers" in size and "vigil" in size:
                w, one = size["vigil-workers"], size["vigil"]
                size["workers_vs_one"] = w["samples_per_s"] / one["samples_per_s"]
                size["workers_vs_one_per_cpu"] = one["cpu_s_per_million"] / w["cpu_s_per_million"]
                print(
                    f"{n_series:>7} series  vigil {args.workers} workers / 1 worker: "
                    f"{size['workers_vs_one']:.2f}x samples/s, "
                    f"{size['workers_vs_one_per_cpu']:.2f}x samples per CPU-second",
                    flush=True,
                )
                if "victoriametrics" in size:
                    size["workers_vs_victoriametrics"] = (
                        w["samples_per_s"] / size["victoriametrics"]["samples_per_s"]
                    )
            for other in ("victoriametrics", "prometheus", "vigil-asyncio", "vigil-baseline"):
                if "vigil" in size and other in size:
                    size[f"vigil_vs_{other}"] = (
                        size["vigil"]["samples_per_s"] / size[other]["samples_per_s"]
                    )
                    # per core: samples per CPU-second (robust to other load on the core)
                    size[f"vigil_vs_{other}_per_cpu"] = (
                        size[other]["cpu_s_per_million"] / size["vigil"]["cpu_s_per_million"]
                    )
                    print(
                        f"{n_series:>7} series  vigil / {other}: "
                        f"{size[f'vigil_vs_{other}']:.2f}x samples/s, "
                        f"{size[f'vigil_vs_{other}_per_cpu']:.2f}x samples per CPU-second",
                        flush=True,
                    )
        finally:
            bodies_file.unlink()
        figures[str(n_series)] = size
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
