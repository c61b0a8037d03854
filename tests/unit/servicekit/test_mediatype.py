"""servicekit.mediatype: JSON bodies must say they are JSON."""

from __future__ import annotations

import pytest

from servicekit import mediatype


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        " application/json ",
    ],
)
def test_json_with_or_without_parameters_is_accepted(value):
    assert mediatype.json_problem(value) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/octet-stream",
        "application/jsonx",
        "text/json",
    ],
)
def test_anything_else_is_refused_with_what_to_send(value):
    problem = mediatype.json_problem(value)
    assert problem is not None and "Content-Type: application/json" in problem


def test_an_optional_body_may_be_absent_but_not_anything_else():
    assert mediatype.empty_or_json_problem(None, has_body=False) is None
    assert mediatype.empty_or_json_problem("text/plain", has_body=False) is None
    assert mediatype.empty_or_json_problem("text/plain", has_body=True) is not None
    assert mediatype.empty_or_json_problem("application/json", has_body=True) is None


def test_a_json_body_is_read_as_utf8_json():
    assert mediatype.json_body('{"reason": "Schloß ✓"}'.encode()) == {"reason": "Schloß ✓"}
    assert mediatype.json_body(b"[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"plan_hash": "\xff\xfe"}', "the body is not UTF-8 (byte 15: invalid start byte)"),
        ('{"a": "é"}'.encode("latin-1"), "the body is not UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "the body is not UTF-8"),
        (b"\xef\xbb\xbf{}", "the body is not JSON"),  # a byte-order mark
        (b"", "the body is not JSON"),
        (b'{"a": ', "the body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"reason": "\\ud800"}', "lone UTF-16 surrogate"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_a_body_error_saying_so(body, expected):
    with pytest.raises(mediatype.BodyError) as err:
        mediatype.json_body(body)
    assert expected in str(err.value)


def test_a_surrogate_pair_is_a_character_not_an_error():
    assert mediatype.json_body(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        'application/json;CHARSET="UTF8"',
    ],
)
def test_no_charset_or_utf8_is_read(value):
    assert mediatype.json_body(b'{"a": 1}', value) == {"a": 1}


@pytest.mark.parametrize(
    "value",
    [
        "application/json; charset=no-such-codec",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/json; charset=",
    ],
)
def test_another_charset_is_a_body_error_naming_it(value):
    with pytest.raises(mediatype.BodyError) as err:
        mediatype.json_body(b'{"a": 1}', value)
    assert str(err.value).startswith("the Content-Type names charset ")
    assert "send charset=utf-8 or no charset" in str(err.value)
