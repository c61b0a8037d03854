"""Two real detector shards behind one real Prometheus, with the generated remote-write.

Prometheus scrapes a real node_exporter under five "pods" (static namespace/pod labels)
and once without them, and writes through deploy/config/render.py's remote_write for two
detectors: the selection of deploy/config/remote-write.yaml, then each entry its hashmod
share of namespace/pod (or instance). A third detector gets the same selection unsharded:
the reference for "what Prometheus sends".

- every series lands on exactly one shard, the one Prometheus' hashmod (md5, last 8 bytes,
  modulo 2) of its key names, and the two shards together hold exactly the reference's
  series, each of which Prometheus itself stored;
- one pod's series all meet on one shard;
- a shard stopped for a while loses nothing: Prometheus retries its queue, and once the
  shard is back (restoring its checkpoint) and the input has stopped (node_exporter
  gone), it has counted exactly the samples the never-stopped reference counted, with the
  same last timestamp, for every series of its share.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.config import render
from tests.integration.procs import free_port, process, require, vigil_detector_argv, wait_until

pytestmark = pytest.mark.integration

SHARDS = 2
# (namespace, pod) of the scrape jobs that stand for pods; one more job has neither label
PODS = [
    ("shop", "web-0"),
    ("shop", "web-1"),
    ("shop", "web-2"),
    ("cart", "api-0"),
    ("cart", "api-1"),
]


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod relabel action: md5 of the value, its last 8 bytes big-endian."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def shard_key(labels: dict[str, str]) -> str:
    """render.shard_relabel's key: namespace;pod, or the instance when both are absent."""
    key = f"{labels.get('namespace', '')};{labels.get('pod', '')}"
    return labels.get("instance", "") if key == ";" and labels.get("instance") else key


def series(port: int) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/series?limit=100000"
    with urllib.request.urlopen(url, timeout=10) as resp:
        data = json.load(resp)["data"]
    return {tuple(sorted(d["labels"].items())): d for d in data}


def prometheus_metric(port: int, name: str) -> dict[str, float]:
    """One of Prometheus' own counters, by remote_name, from its /metrics (it does not
    scrape itself here)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels.get("remote_name", "")] = sample.value
    return out


def prometheus_config(node_port: int, urls: list[str], reference_url: str) -> str:
    jobs = [
        {
            "job_name": f"pod-{ns}-{pod}",
            "static_configs": [
                {"targets": [f"127.0.0.1:{node_port}"], "labels": {"namespace": ns, "pod": pod}}
            ],
        }
        for ns, pod in PODS
    ]
    text = render.render_prometheus(
        scrape_targets={"node": [f"127.0.0.1:{node_port}"]},
        alertmanagers=[],
        remote_write_urls=urls,
        rule_files=[],
        extra_scrape_configs=jobs,
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    doc = yaml.safe_load(text)
    reference = render.remote_write([reference_url])[0]
    reference["name"] = "reference"
    doc["remote_write"].append(reference)
    return yaml.safe_dump(doc, sort_keys=False)


def test_two_shards_split_every_series_once_and_lose_nothing(tmp_path: Path) -> None:
    keys = [f"{ns};{pod}" for ns, pod in PODS]
    assert {hashmod(k, SHARDS) for k in keys} == set(range(SHARDS)), "pick other pod names"
    node_port, prom_port = free_port(), free_port()
    ports = [free_port() for _ in range(SHARDS)]
    ref_port = free_port()
    urls = [f"http://127.0.0.1:{p}/api/v1/write" for p in ports]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        prometheus_config(node_port, urls, f"http://127.0.0.1:{ref_port}/api/v1/write")
    )
    entries = yaml.safe_load(config.read_text())["remote_write"]
    assert [e["url"] for e in entries[:SHARDS]] == urls
    assert [
        r["modulus"]
        for e in entries[:SHARDS]
        for r in e["write_relabel_configs"]
        if r.get("action") == "hashmod"
    ] == [SHARDS] * SHARDS

    def detector(i: int, port: int) -> contextlib.AbstractContextManager[Any]:
        return process(
            f"shard-{i}",
            vigil_detector_argv(port, "--state-dir", str(tmp_path / f"state-{i}")),
            tmp_path,
            ready_url=f"http://127.0.0.1:{port}/readyz",
            timeout_s=240,
        )

    with contextlib.ExitStack() as stack:
        exporter = contextlib.ExitStack()
        stack.enter_context(exporter)
        exporter.enter_context(
            process(
                "node_exporter",
                [
                    require("prometheus-node-exporter"),
                    f"--web.listen-address=127.0.0.1:{node_port}",
                    "--no-collector.systemd",
                ],
                tmp_path,
                ready_url=f"http://127.0.0.1:{node_port}/metrics",
            )
        )
        stack.enter_context(detector(9, ref_port))
        stack.enter_context(detector(0, ports[0]))
        shard1 = contextlib.ExitStack()
        shard1.enter_context(detector(1, ports[1]))
        stack.enter_context(
            process(
                "prometheus",
                [
                    require("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path,
                ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
            )
        )

        def every_job_arrived() -> bool:
            jobs = {dict(k).get("job") for k in series(ref_port)}
            return jobs >= {"node", *(f"pod-{ns}-{pod}" for ns, pod in PODS)}

        wait_until(
            "every job's series reach the reference",
            every_job_arrived,
            timeout_s=120,
            interval_s=0.5,
        )

        # --- the split: each series on exactly the shard its key hashes to -------------
        def split_complete() -> bool:
            ref = set(series(ref_port))
            held = [set(series(p)) for p in ports]
            return set().union(*held) == ref

        wait_until(
            "the shards hold every series the reference holds",
            split_complete,
            timeout_s=60,
            interval_s=0.5,
        )
        reference = series(ref_port)
        held = [series(p) for p in ports]
        assert not set(held[0]) & set(held[1]), "a series reached both shards"
        assert set(held[0]) | set(held[1]) == set(reference)
        pods_on: dict[str, set[int]] = {}
        for i, shard in enumerate(held):
            assert shard, f"shard {i} got nothing"
            for key in shard:
                labels = dict(key)
                assert not any(k.startswith("__tmp_vigil") for k in labels), labels
                assert hashmod(shard_key(labels), SHARDS) == i, labels
                pods_on.setdefault(shard_key(labels), set()).add(i)
        # a pod's series stay together (and so do the pod-less job's, by instance)
        assert set(pods_on) == {*keys, f"127.0.0.1:{node_port}"}
        assert all(len(on) == 1 for on in pods_on.values()), pods_on
        # what the detectors hold, Prometheus stored
        url = f"http://127.0.0.1:{prom_port}/api/v1/series?" + urllib.parse.urlencode(
            {"match[]": '{__name__=~"node_.+"}'}
        )
        with urllib.request.urlopen(url, timeout=10) as resp:
            stored = {tuple(sorted(d.items())) for d in json.load(resp)["data"]}
        assert set(reference) <= stored

        # --- shard 1 goes away for a while; Prometheus queues and retries --------------
        shard1.close()
        retried = prometheus_metric(prom_port, "prometheus_remote_storage_samples_retried_total")
        failed_before = prometheus_metric(
            prom_port, "prometheus_remote_storage_samples_failed_total"
        )

        def retrying() -> bool:
            now = prometheus_metric(prom_port, "prometheus_remote_storage_samples_retried_total")
            return now.get("vigil-1", 0) > retried.get("vigil-1", 0) + 100

        wait_until(
            "Prometheus retries the stopped shard's samples", retrying, timeout_s=60, interval_s=0.5
        )
        shard1.enter_context(detector(1, ports[1]))
        # then freeze the input: with node_exporter gone Prometheus scrapes nothing more
        # (it sends the staleness markers), so the restarted shard and the reference can
        # be compared at rest, series by series
        exporter.close()
        mismatch: list[str] = []

        def caught_up() -> bool:
            """Every series of shard 1 has the reference's last timestamp and sample count
            (the reference never stopped)."""
            ref = series(ref_port)
            back = series(ports[1])
            # the reference's series of shard 1 (node_exporter may have added some)
            want = {k for k in ref if hashmod(shard_key(dict(k)), SHARDS) == 1}
            mismatch[:] = (
                [f"{len(want - set(back))} series missing, {len(set(back) - want)} unexpected"]
                if set(back) != want
                else [
                    f"{dict(k).get('__name__')}: ts {back[k]['last_timestamp_ms']} vs "
                    f"{ref[k]['last_timestamp_ms']}, samples {back[k]['samples']} vs "
                    f"{ref[k]['samples']}"
                    for k in back
                    if (back[k]["last_timestamp_ms"], back[k]["samples"])
                    != (ref[k]["last_timestamp_ms"], ref[k]["samples"])
                ]
            )
            return not mismatch

        try:
            wait_until(
                "shard 1 back with every sample the reference has",
                caught_up,
                timeout_s=180,
                interval_s=0.5,
            )
        except TimeoutError:
            pytest.fail(f"{len(mismatch)} series differ, e.g. {mismatch[:5]}")
        failed = prometheus_metric(prom_port, "prometheus_remote_storage_samples_failed_total")
        # nothing given up on (samples_dropped_total counts the selection's relabel drops)
        assert failed.get("vigil-1", 0) == failed_before.get("vigil-1", 0)
        shard1.close()
