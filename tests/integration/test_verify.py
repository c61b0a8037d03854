"""`vigil-detector verify` and `POST /api/v1/verify` against a real Prometheus whose history
was backfilled with `promtool tsdb create-blocks-from openmetrics`: a good release, a bad
one, a noisy one, a canary beside its stable version, and too little data."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.integration.procs import free_port, process, require, vigil_detector_argv

pytestmark = pytest.mark.integration

STEP_S = 15
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Release:
    """How a job's requests behave: per-step request count, error share, latency."""

    requests: float
    error_ratio: float
    latency_s: float
    latency_sd: float
    cpu: float


NORMAL = Release(requests=50, error_ratio=0.002, latency_s=0.2, latency_sd=0.03, cpu=0.1)
BAD = Release(requests=50, error_ratio=0.08, latency_s=0.7, latency_sd=0.1, cpu=0.1)
NOISY = Release(requests=12, error_ratio=0.01, latency_s=0.25, latency_sd=0.2, cpu=0.1)
# job -> (before the change, after it)
JOBS = {
    "good": (NORMAL, NORMAL),
    "bad": (NORMAL, BAD),
    "noisy": (NOISY, NOISY),
    "stable": (NORMAL, NORMAL),
    "canary": (NORMAL, BAD),
}


@dataclass(frozen=True)
class History:
    prometheus: str
    change_s: int


def _openmetrics(start_s: int, change_s: int, end_s: int) -> str:
    rng = np.random.default_rng(11)
    times = range(start_s, end_s, STEP_S)
    requests: dict[tuple[str, str], list[str]] = {}
    buckets: dict[tuple[str, str], list[str]] = {}
    sums: dict[str, list[str]] = {}
    counts: dict[str, list[str]] = {}
    cpu: dict[str, list[str]] = {}
    for job, (before, after) in JOBS.items():
        ok = err = 0
        le = np.zeros(len(BUCKETS) + 1)
        total_s = cpu_s = 0.0
        for t in times:
            rel = before if t < change_s else after
            n = int(rng.poisson(rel.requests))
            failed = int(rng.binomial(n, rel.error_ratio))
            ok, err = ok + n - failed, err + failed
            lat = np.abs(rng.normal(rel.latency_s, rel.latency_sd, n))
            for i, bound in enumerate(BUCKETS):
                le[i] += int(np.sum(lat <= bound))
            le[-1] += n
            total_s += float(lat.sum())
            cpu_s += rel.cpu * STEP_S * float(rng.uniform(0.9, 1.1))
            requests.setdefault((job, "200"), []).append(f"{ok} {t}")
            requests.setdefault((job, "500"), []).append(f"{err} {t}")
            for i, edge in enumerate((*map(str, BUCKETS), "+Inf")):
                buckets.setdefault((job, edge), []).append(f"{int(le[i])} {t}")
            sums.setdefault(job, []).append(f"{total_s:.4f} {t}")
            counts.setdefault(job, []).append(f"{int(le[-1])} {t}")
            cpu.setdefault(job, []).append(f"{cpu_s:.4f} {t}")
    lines = ["# TYPE shop_requests counter"]
    for (job, code), samples in requests.items():
        lines += [f'shop_requests_total{{code="{code}",job="{job}"}} {s}' for s in samples]
    lines.append("# TYPE shop_request_duration_seconds histogram")
    for (job, edge), samples in buckets.items():
        lines += [
            f'shop_request_duration_seconds_bucket{{job="{job}",le="{edge}"}} {s}' for s in samples
        ]
    for job in JOBS:
        lines += [f'shop_request_duration_seconds_sum{{job="{job}"}} {s}' for s in sums[job]]
        lines += [f'shop_request_duration_seconds_count{{job="{job}"}} {s}' for s in counts[job]]
    lines.append("# TYPE process_cpu_seconds counter")
    for job in JOBS:
        lines += [f'process_cpu_seconds_total{{job="{job}"}} {s}' for s in cpu[job]]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    tmp = tmp_path_factory.mktemp("verify")
    import time

    now_s = int(time.time()) // 60 * 60
    # the whole history lies more than an hour back, in blocks only
    start_s, change_s, end_s = now_s - 3 * 3600, now_s - 5400, now_s - 3600
    (tmp / "history.om").write_text(_openmetrics(start_s, change_s, end_s))
    tsdb = tmp / "tsdb"
    subprocess.run(
        [
            require("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(tmp / "history.om"),
            str(tsdb),
        ],
        check=True,
        capture_output=True,
    )
    (tmp / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    with process(
        "prometheus",
        [
            require("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp,
        ready_url=f"http://127.0.0.1:{port}/-/ready",
    ):
        yield History(f"http://127.0.0.1:{port}", change_s)


def verify_cli(history: History, *args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector",
            "verify",
            "--prometheus",
            history.prometheus,
            "--change-time",
            str(history.change_s),
            "--baseline",
            "30m",
            "--observe",
            "20m",
            "--json",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def verdicts(doc: dict) -> dict[str, str]:
    return {q["name"]: q["verdict"] for q in doc["queries"]}


def test_a_good_release_passes(history: History):
    code, doc = verify_cli(history, "--selector", 'job="good"')
    assert (code, doc["verdict"]) == (0, "pass"), doc
    assert verdicts(doc) == {"error_ratio": "pass", "latency_p99": "pass", "cpu": "pass"}
    assert all(q["n_baseline"] >= 100 and q["n_observed"] >= 70 for q in doc["queries"])


def test_a_bad_release_fails_on_errors_and_latency_with_reasons(history: History):
    code, doc = verify_cli(history, "--selector", 'job="bad"')
    assert (code, doc["verdict"]) == (1, "fail"), doc
    assert verdicts(doc) == {"error_ratio": "fail", "latency_p99": "fail", "cpu": "pass"}
    latency = next(q for q in doc["queries"] if q["name"] == "latency_p99")
    assert latency["p_value"] < 1e-6 and latency["effect"] > 0.9
    assert latency["anomalous_share"] > 0.5
    assert latency["observed_median"] > 2 * latency["baseline_median"]
    assert any(r.startswith("worse: median") for r in latency["reasons"])


def test_a_noisy_release_is_not_failed_for_its_noise(history: History):
    code, doc = verify_cli(history, "--selector", 'job="noisy"')
    assert doc["verdict"] != "fail", doc
    assert code == {"pass": 0, "inconclusive": 2}[doc["verdict"]]


def test_a_canary_is_judged_beside_its_stable_version(history: History):
    code, doc = verify_cli(
        history, "--canary", 'job="canary"', "--baseline-selector", 'job="stable"'
    )
    assert (code, doc["mode"], doc["verdict"]) == (1, "canary", "fail"), doc
    latency = next(q for q in doc["queries"] if q["name"] == "latency_p99")
    assert 'job="canary"' in latency["observed_query"]
    assert 'job="stable"' in latency["baseline_query"]


def test_too_little_data_is_inconclusive_with_what_to_do(history: History):
    code, doc = verify_cli(history, "--selector", 'job="bad"', "--observe", "90s")
    assert (code, doc["verdict"]) == (2, "inconclusive"), doc
    assert any("fewer than" in r for q in doc["queries"] for r in q["reasons"])


def test_explicit_queries_and_the_human_report(history: History):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector",
            "verify",
            "--prometheus",
            history.prometheus,
            "--change-time",
            str(history.change_s),
            "--baseline",
            "30m",
            "--observe",
            "20m",
            "--query",
            'throughput:down=sum(rate(shop_requests_total{job="bad"}[2m]))',
            "--query",
            'errors=sum(rate(shop_requests_total{job="bad",code="500"}[2m]))',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("verdict: FAIL (before_after, change at ")
    assert "  pass         throughput" in done.stdout
    assert "  fail         errors" in done.stdout


def test_a_query_returning_several_series_is_inconclusive(history: History):
    code, doc = verify_cli(history, "--query", "all=rate(shop_requests_total[2m])")
    assert (code, doc["verdict"]) == (2, "inconclusive")
    assert "aggregate it to one" in doc["queries"][0]["reasons"][0]


def test_the_api_judges_the_same(history: History, tmp_path: Path):
    port = free_port()
    with process(
        "vigil",
        vigil_detector_argv(port, "--prometheus", history.prometheus),
        tmp_path,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        timeout_s=180,
    ):
        body = json.dumps(
            {
                "selector": 'job="bad"',
                "change_time": history.change_s,
                "baseline_s": 1800,
                "observe_s": 1200,
            }
        ).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/verify",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.load(resp)
        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/verify",
            data=b'{"selector": "job=", "observe_s": -1}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
    assert doc["verdict"] == "fail" and verdicts(doc)["latency_p99"] == "fail"
    assert refused.value.code == 400
    problems = json.loads(refused.value.read())["problems"]
    assert any(p.startswith("selector") for p in problems)
    assert any(p.startswith("observe_s") for p in problems)
