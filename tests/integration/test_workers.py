"""``vigil-detector serve --workers 2`` as real processes, against a one-worker reference.

The same real remote-write bodies (``detector.remote_write.encode``; 1.0 and 2.0) go to
both, each POST on a new connection so the kernel spreads them over the two workers; a
503 is retried, as Prometheus does. Then:

- every series is on exactly the worker Prometheus' hashmod of ``namespace;pod`` names,
  and the two together hold exactly the reference's series with the same sample counts;
- the service answers as one: /metrics sums to the reference's accepted samples with a
  ``worker`` label, /-/ready is 200, POST /-/reload reloads both, a malformed body is a 400;
- a worker killed with SIGKILL (after its checkpoint) is restarted by the supervisor and
  restores its series; requests sent while it is down get 503 and are retried, and at the
  end the counts still equal the reference's: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from detector.remote_write import encode
from tests.integration.procs import free_port, process, vigil_detector_argv, wait_until

pytestmark = pytest.mark.integration

WORKERS = 2
PODS = [
    (ns, f"{app}-{k}")
    for ns in ("shop", "cart", "auth")
    for app in ("web", "api")
    for k in range(4)
]
START_MS = 1_700_000_000_000
CONFIG = "checkpoint:\n  interval_s: 1\n"


def hashmod(value: str, modulus: int) -> int:
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def body(round_: int, version: int = 1) -> bytes:
    series = [
        encode.Series(
            labels=sorted({"__name__": name, "namespace": ns, "pod": pod, "job": "app"}.items()),
            samples=[(START_MS + 1000 * round_, float(round_ % 7) + k)],
        )
        for k, (ns, pod) in enumerate(PODS)
        for name in ("requests_total", "latency_seconds")
    ]
    raw = encode.encode_v1(series) if version == 1 else encode.encode_v2(series)
    return encode.compress(raw)


def post(port: int, data: bytes, version: int = 1) -> int:
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
    if version == 2:
        headers["Content-Type"] += ";proto=io.prometheus.write.v2.Request"
        headers["X-Prometheus-Remote-Write-Version"] = "2.0.0"
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/write", data=data, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # a connection the dying worker had accepted: retried


def send(port: int, data: bytes, version: int = 1) -> int:
    """POST until accepted, as Prometheus retries a 503; the number of 503s."""
    refused = 0

    def accepted() -> bool:
        nonlocal refused
        status = post(port, data, version)
        assert status in (204, 503, 0), status
        refused += status != 204
        return status == 204

    wait_until("write accepted", accepted, timeout_s=120, interval_s=0.1)
    return refused


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.load(resp)


def metric(port: int, name: str) -> dict[str, float]:
    """Samples of ``name`` summed by their worker label ('' without one)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                worker = s.labels.get("worker", "")
                out[worker] = out.get(worker, 0.0) + s.value
    return out


def series_counts(port: int) -> dict[tuple[tuple[str, str], ...], tuple[int, int | None]]:
    doc = get_json(port, "/api/v1/series?limit=100000")
    assert doc["total"] == len(doc["data"])
    return {
        tuple(sorted(d["labels"].items())): (d["samples"], d.get("worker")) for d in doc["data"]
    }


def worker_pids(supervisor: int) -> dict[int, int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    out = {}
    for pid in map(int, children):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        out[int(argv[argv.index(b"--worker-index") + 1])] = pid
    return out


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[int, int, int, Path]]:
    """(fleet port, reference port, supervisor pid, state dir)."""
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(CONFIG)
    fleet, ref = free_port(), free_port()
    state = tmp_path / "state"
    common = ("--config", str(cfg), "--log-level", "WARNING")
    with (
        process(
            "reference",
            vigil_detector_argv(ref, *common),
            tmp_path,
            ready_url=f"http://127.0.0.1:{ref}/-/ready",
            timeout_s=180,
        ),
        process(
            "fleet",
            vigil_detector_argv(
                fleet, *common, "--workers", str(WORKERS), "--state-dir", str(state)
            ),
            tmp_path,
            ready_url=f"http://127.0.0.1:{fleet}/-/ready",
            timeout_s=180,
        ) as sup,
    ):
        yield fleet, ref, sup.pid, state


def test_two_workers_split_by_hashmod_answer_as_one_and_lose_nothing(services) -> None:
    fleet, ref, sup_pid, state = services
    owners = {hashmod(f"{ns};{pod}", WORKERS) for ns, pod in PODS}
    assert owners == set(range(WORKERS)), "pick other pod names"
    rounds = 0
    for r in range(12):
        version = 2 if r % 3 == 2 else 1
        send(ref, body(r, version), version)
        send(fleet, body(r, version), version)
        rounds += 1
    # a malformed body is the receiving worker's 400, whichever worker that is
    for _ in range(4):
        assert post(fleet, encode.compress(b"\x0a\x05\x0a\x03")) == 400

    def same_as_reference() -> bool:
        got, want = series_counts(fleet), series_counts(ref)
        return {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}

    wait_until("both hold the same samples", same_as_reference, timeout_s=60)
    got = series_counts(fleet)
    assert len(got) == 2 * len(PODS)
    for labels, (samples, worker) in got.items():
        d = dict(labels)
        assert worker == hashmod(f"{d['namespace']};{d['pod']}", WORKERS), labels
        assert samples == rounds
    assert {w for _, w in got.values()} == set(range(WORKERS))
    accepted = metric(fleet, "vigil_samples_accepted_total")
    assert set(accepted) == {"0", "1"}
    assert sum(accepted.values()) == metric(ref, "vigil_samples_accepted_total")[""]
    assert metric(fleet, "vigil_fleet_worker_up") == {"0": 1.0, "1": 1.0}
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet}/-/ready", timeout=10) as resp:
        assert resp.status == 200
    # the console's data: the recent list of both; a chart id names its worker (id % 2)
    assert get_json(fleet, "/api/v1/anomalies/recent")["status"] == "success"
    with pytest.raises(urllib.error.HTTPError) as missing:
        get_json(fleet, "/api/v1/anomalies/1/history")
    assert missing.value.code == 404 and b"series '0'" in missing.value.read()
    # POST /-/reload reaches one worker, which passes it on to the other
    reload = urllib.request.Request(f"http://127.0.0.1:{fleet}/-/reload", method="POST")
    with urllib.request.urlopen(reload, timeout=30) as resp:
        assert resp.status == 200
    assert metric(fleet, "vigil_config_reloads_total") == {"0": 1.0, "1": 1.0}

    # a checkpoint of worker 1 newer than the last round, then SIGKILL
    marker = max(metric(fleet, "vigil_checkpoints_written_total").get("1", 0.0), 0.0)
    wait_until(
        "worker 1 checkpointed again",
        lambda: metric(fleet, "vigil_checkpoints_written_total").get("1", 0.0) > marker + 1,
        timeout_s=30,
    )
    pids = worker_pids(sup_pid)
    os.kill(pids[1], signal.SIGKILL)
    refused = 0
    for r in range(rounds, rounds + 6):
        send(ref, body(r))
        refused += send(fleet, body(r))
        rounds += 1
    wait_until(
        "worker 1 restarted",
        lambda: (
            worker_pids(sup_pid).get(1, pids[1]) != pids[1]
            and metric(fleet, "vigil_fleet_worker_restarts_total").get("1") == 1.0
        ),
        timeout_s=120,
    )
    assert refused >= 1, "no request met the dead worker: the test proves nothing"
    wait_until("both hold the same samples again", same_as_reference, timeout_s=60)
    for labels, (samples, worker) in series_counts(fleet).items():
        assert samples == rounds, (labels, samples, worker)
    assert (state / "workers").read_text() == "2\n"
    assert (state / "worker-1" / "CURRENT").exists()
