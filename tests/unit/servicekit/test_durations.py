"""servicekit.durations: one parser for Prometheus durations, in configs and on flags."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from servicekit.durations import (
    JSON_PATTERN,
    MAX_SECONDS,
    DurationError,
    Seconds,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0.5", 0.5),
        ("3600", 3600.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1y", 365 * 86400.0),
        ("2d3h4m5s6ms", 2 * 86400 + 3 * 3600 + 4 * 60 + 5.006),
        (" 1h ", 3600.0),
        ("0s", 0.0),
    ],
)
def test_parses_seconds_and_prometheus_syntax(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "30m1h",
        "1hh",
        "-5",
        "",
        "   ",
        "1.5h",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "h",
        "1x",
        "1h 30m",
        "1H",
        "5mm",
        "1s1s",
    ],
)
def test_rejects_what_is_not_a_duration(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_errors_say_what_is_expected():
    with pytest.raises(DurationError, match=r"e\.g\. 1h30m, not 30m1h"):
        parse_duration("30m1h")
    with pytest.raises(DurationError, match="units y w d h m s ms"):
        parse_duration("1.5h")
    with pytest.raises(DurationError, match="empty duration"):
        parse_duration("")


@given(st.integers(min_value=0, max_value=10 * 365 * 86400 * 1000))
def test_format_then_parse_round_trips_whole_milliseconds(ms):
    text = format_duration(ms / 1000)
    assert parse_duration(text) == pytest.approx(ms / 1000, rel=1e-12, abs=1e-9)
    assert re.fullmatch(JSON_PATTERN.replace("(?=.)", ""), text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5400, "1h30m"),
        (604800, "1w"),
        (0.25, "250ms"),
        (90061, "1d1h1m1s"),
    ],
)
def test_format_uses_the_largest_units(seconds, text):
    assert format_duration(seconds) == text


class _Model(BaseModel):
    wait_s: Seconds = Field(60.0, gt=0)
    periods_s: tuple[Seconds, ...] = ()


def test_a_seconds_field_takes_numbers_and_durations_and_keeps_its_bounds():
    assert _Model(wait_s="1h30m", periods_s=("1d", 604800)).model_dump() == {
        "wait_s": 5400.0,
        "periods_s": (86400.0, 604800.0),
    }
    assert _Model(wait_s=3).wait_s == 3.0
    with pytest.raises(ValidationError, match="greater than 0"):
        _Model(wait_s="0s")
    with pytest.raises(ValidationError, match="units must go from largest"):
        _Model(wait_s="30m1h")


def test_the_json_schema_offers_a_number_with_its_bounds_or_a_duration():
    prop = _Model.model_json_schema()["properties"]["wait_s"]
    number, text = prop["anyOf"]
    assert number == {"type": "number", "exclusiveMinimum": 0}
    assert text["type"] == "string"
    pattern = re.compile(text["pattern"])
    assert all(pattern.search(t) for t in ("90s", "1h30m", "7d", "250ms"))
    assert not any(pattern.search(t) for t in ("", "30m1h", "1.5h", "1hh"))
    json.dumps(prop)  # serialisable as is


@pytest.mark.parametrize(
    "value",
    [
        "٣m",  # Arabic-Indic digit three: Python's \d takes it, Prometheus does not
        "9" * 400 + "y",  # overflowed float(int) into a traceback
        "99999999999y",
        "11y",
        "1e400",
        float("inf"),
        float("nan"),
        10**30,
    ],
)
def test_absurd_durations_are_refused_with_a_clear_message(value):
    with pytest.raises(ValidationError) as info:
        TypeAdapter(Seconds).validate_python(value)
    message = info.value.errors()[0]["msg"]
    assert "duration" in message or "finite" in message or "10y" in message, message


def test_ten_years_is_the_longest_duration():
    assert parse_duration("10y") == MAX_SECONDS
    with pytest.raises(DurationError, match="longer than 10y"):
        parse_duration("3650d1s")
