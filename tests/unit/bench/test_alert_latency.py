"""bench/alert_latency.py: which worker owns and receives each probe, the figures split
by route, and finding the worker that holds a connection."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys

import pytest

from bench import alert_latency
from detector.fleet.partition import Partition


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_probe_series_are_owned_by_the_worker_in_turn(workers):
    seen = set()
    for i in range(60):
        labels = dict(alert_latency._probe_labels("loaded", i, workers))
        assert Partition(0, workers).owner(labels) == alert_latency.probe_owner(i, workers)
        assert alert_latency.probe_owner(i, workers) == i % workers
        seen.add((labels["namespace"], labels["pod"]))
    assert len({ns for ns, _ in seen}) == 60  # no two probes share a related label
    assert len({pod for _, pod in seen}) == 60


def test_every_receiver_owner_pair_comes_round():
    pairs = [
        (alert_latency.probe_receiver(i, 2), alert_latency.probe_owner(i, 2)) for i in range(8)
    ]
    assert sorted(pairs) == sorted([(0, 0), (0, 1), (1, 0), (1, 1)] * 2)


def test_route_figures_split_latencies_and_misses():
    res = alert_latency.PhaseResult(
        routed=[(0, 0, 1.0), (0, 1, 10.0), (1, 0, 20.0), (1, 1, 2.0), (0, 0, 3.0)],
        missed_routes=[(1, 0)],
    )
    fig = alert_latency.route_figures(res)
    assert fig["by_route"]["local"]["n"] == 3
    assert fig["by_route"]["local"]["max"] == 3.0
    assert fig["by_route"]["forwarded"]["n"] == 2
    assert fig["by_route"]["forwarded"]["missed"] == 1
    assert fig["by_owner"]["worker-0"]["n"] == 3
    assert fig["by_owner"]["worker-1"]["max"] == 10.0
    assert fig["by_receiver_owner"]["received-1-owned-0"] == {
        **alert_latency._dist([20.0]),
        "missed": 1,
    }


def test_a_connection_is_found_on_the_process_that_accepted_it():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.connect()
        accepted, _ = listener.accept()
        fleet = alert_latency.Fleet(port, [other.pid, os.getpid()])
        assert fleet.receiver_of(conn) == 1
        accepted.close()
    finally:
        conn.close()
        listener.close()
        assert other.stdin is not None
        other.stdin.close()
        other.wait(10)
