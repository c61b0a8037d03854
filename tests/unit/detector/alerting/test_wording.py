import math

import pytest

from detector.alerting import wording


@pytest.mark.parametrize(
    ("value", "metric", "rate", "text"),
    [
        (2.3, "http_request_duration_seconds", False, "2.3 s"),
        (0.21, "http_request_duration_seconds", False, "210 ms"),
        (0.00005, "rpc_latency_seconds", False, "50 µs"),
        (600.0, "job_duration_seconds", False, "10 min"),
        (1.5 * 1024**3, "container_memory_working_set_bytes", False, "1.5 GiB"),
        (512.0, "node_memory_free_bytes", False, "512 B"),
        (0.123, "cache_hit_ratio", False, "12.3 %"),
        (3400.0, "http_requests_total", True, "3.4k/s"),
        (0.52, "process_cpu_seconds_total", True, "0.52 s/s"),
        (42.0, "temperature_celsius", False, "42 °C"),
        (1234567.0, "queue_depth", False, "1.23M"),
        (0.000123, "weird", False, "0.000123"),
        (math.nan, "x", False, "NaN"),
        (-math.inf, "x", False, "-Inf"),
    ],
)
def test_values_carry_their_units(value, metric, rate, text):
    assert wording.format_value(value, metric=metric, rate=rate) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (45_000, "45 s"),
        (360_000, "6 min"),
        (7_500_000, "2 h 5 min"),
        (7_200_000, "2 h"),
        (3 * 86400_000 + 4 * 3600_000, "3 d 4 h"),
        (-5, "0 s"),
    ],
)
def test_durations(ms, text):
    assert wording.format_duration(ms) == text


def test_selector_escapes_values_and_describes_the_series():
    labels = [("__name__", "up"), ("job", 'a"b\\c'), ("namespace", "shop"), ("pod", "p-1")]
    assert wording.selector(labels) == 'up{job="a\\"b\\\\c",namespace="shop",pod="p-1"}'
    assert wording.what(labels, rate=False) == 'up (namespace=shop, pod=p-1, job=a"b\\c)'
    assert wording.what([("__name__", "x_total")], rate=True) == "rate of x_total"


def test_times():
    assert wording.iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert wording.time_of_week(1_700_000_000_000, weekly=True) == "for a Tuesday 22:13 UTC"
    assert wording.time_of_week(1_700_000_000_000, weekly=False) == "for 22:13 UTC"


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.5, "0.500000"),
        (0.99991, "0.999910"),
        (0.9999995, "0.9999995"),
        (1.0, "1"),
        (math.nan, "NaN"),
    ],
)
def test_scores_keep_their_nines(x, text):
    assert wording.score(x) == text


def test_a_setting_is_worded_in_its_largest_whole_unit():
    assert [wording.setting_duration(s) for s in (3600, 5400, 45, 90.5, 172800)] == [
        "1 h",
        "90 min",
        "45 s",
        "90.5 s",
        "2 d",
    ]
