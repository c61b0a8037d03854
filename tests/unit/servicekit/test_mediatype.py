"""servicekit.mediatype: JSON bodies must say they are JSON."""

from __future__ import annotations

import pytest

from servicekit import mediatype


@pytest.mark.parametrize("value", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON;charset=UTF-8", " application/json "])
def test_json_with_or_without_parameters_is_accepted(value):
    assert mediatype.json_problem(value) is None


@pytest.mark.parametrize("value", [None, "", "text/plain", "text/plain; charset=utf-8",
                                   "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/octet-stream", "application/jsonx",
                                   "text/json"])
def test_anything_else_is_refused_with_what_to_send(value):
    problem = mediatype.json_problem(value)
    assert problem is not None and "Content-Type: application/json" in problem


def test_an_optional_body_may_be_absent_but_not_anything_else():
    assert mediatype.empty_or_json_problem(None, has_body=False) is None
    assert mediatype.empty_or_json_problem("text/plain", has_body=False) is None
    assert mediatype.empty_or_json_problem("text/plain", has_body=True) is not None
    assert mediatype.empty_or_json_problem("application/json", has_body=True) is None
