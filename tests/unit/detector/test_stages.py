"""The per-stage CPU profile (serve --profile-stages): laps, threads, the off switch."""

import threading
import time

from prometheus_client import CollectorRegistry

from detector import stages
from tests.conftest import SAMPLES
from tests.unit.detector.apphelpers import V1, start


def _spin(ns: int) -> None:
    """Burn at least ``ns`` of this thread's CPU time."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def test_each_lap_charges_the_cpu_time_since_the_previous_one():
    clock = stages.StageClock()
    clock.lap(stages.RECEIVE)  # the first lap of a thread starts its mark
    _spin(3_000_000)
    clock.lap(stages.SCAN)
    _spin(1_000_000)
    clock.lap(stages.DETECT)
    got = clock.seconds()
    assert got["scan"] >= 0.003
    assert 0.001 <= got["detect"] < got["scan"]
    assert got["resolve"] == 0.0
    assert set(got) == set(stages.STAGES)


def test_threads_keep_their_own_marks_and_are_summed():
    clock = stages.StageClock()
    clock.lap(stages.ROUTE)

    def worker() -> None:
        clock.lap(stages.ROUTE)
        _spin(2_000_000)
        clock.lap(stages.DETECT)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    _spin(2_000_000)
    clock.lap(stages.DECOMPRESS)
    got = clock.seconds()
    assert got["detect"] >= 0.002 and got["decompress"] >= 0.002


def test_off_records_nothing():
    stages.OFF.lap(stages.DETECT)
    assert stages.OFF.enabled is False
    assert all(v == 0.0 for v in stages.OFF.seconds().values())


async def test_profiled_app_exports_every_stage_of_a_write(aiohttp_client):
    client, rt = await start(aiohttp_client, metrics=CollectorRegistry(), profile_stages=True)
    resp = await client.post(
        "/api/v1/write", data=(SAMPLES / "rw_data_1.snappy.bin").read_bytes(), headers=V1
    )
    assert resp.status == 204
    await rt.wait_idle()
    text = await (await client.get("/metrics")).text()
    values = {
        line.split('stage="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vigil_profile_stage_cpu_seconds_total{")
    }
    assert set(values) == set(stages.STAGES)
    # a first request decodes, resolves new series in the decode thread and detects
    for stage in ("decompress", "scan", "resolve", "detect"):
        assert values[stage] > 0, stage


async def test_unprofiled_app_exports_no_stages(aiohttp_client):
    client, _ = await start(aiohttp_client)
    text = await (await client.get("/metrics")).text()
    assert "vigil_profile_stage_cpu_seconds" not in text
