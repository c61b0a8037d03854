"""Alertmanager-style label matchers: parsing, anchored regexes, silence mapping."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.catalog.matchers import Matcher, matches_all, parse_matcher


@pytest.mark.parametrize(
    "text,name,op,value",
    [
        ("severity=critical", "severity", "=", "critical"),
        ('severity="critical"', "severity", "=", "critical"),
        ("  severity = critical  ", "severity", "=", "critical"),
        ('job!="node"', "job", "!=", "node"),
        ('severity=~"warning|critical"', "severity", "=~", "warning|critical"),
        ("instance!~db-.*", "instance", "!~", "db-.*"),
        ('team=""', "team", "=", ""),
        ("team=", "team", "=", ""),
        ("_private=x", "_private", "=", "x"),
        ('msg="a \\"quoted\\" value"', "msg", "=", 'a "quoted" value'),
        ('msg="tab\\tnew\\nline \\\\ slash"', "msg", "=", "tab\tnew\nline \\ slash"),
        ('msg="caf\\u00e9"', "msg", "=", "café"),
        ('host=~"db\\\\.example\\\\.com"', "host", "=~", "db\\.example\\.com"),
        ("expr=a=b", "expr", "=", "a=b"),  # the first operator splits
        ('summary="  padded  "', "summary", "=", "  padded  "),  # quotes keep spaces
    ],
)
def test_parse(text: str, name: str, op: str, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.op, m.value) == (name, op, value)
    assert m == Matcher(name, op, value)


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "just text",
            "matcher 'just text': expected name=value, name!=value, name=~regex or name!~regex",
        ),
        (
            "1abc=x",
            "matcher '1abc=x': expected name=value, name!=value, name=~regex or name!~regex",
        ),
        ("=x", "matcher '=x': expected name=value, name!=value, name=~regex or name!~regex"),
        (
            'a~"x"',
            "matcher 'a~\"x\"': expected name=value, name!=value, name=~regex or name!~regex",
        ),
        (
            'instance=~"db-(1"',
            "matcher 'instance=~\"db-(1\"': bad regex (missing ), unterminated "
            "subpattern at position 3)",
        ),
        (
            "instance=~db-[0-9",
            "matcher 'instance=~db-[0-9': bad regex (unterminated character set at position 3)",
        ),
        ("x!~*", "matcher 'x!~*': bad regex (nothing to repeat at position 0)"),
        ('team="ops', "matcher 'team=\"ops': bad quoted value (Unterminated string starting at)"),
        ('team="ops" or 1', "matcher 'team=\"ops\" or 1': bad quoted value (Extra data)"),
        ('team="\\q"', "matcher 'team=\"\\\\q\"': bad quoted value (Invalid \\escape)"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_matcher(text)
    assert str(info.value) == message


LABELS = {"alertname": "DiskFull", "instance": "db-1", "severity": "warning", "empty": ""}


@pytest.mark.parametrize(
    "text,hit",
    [
        ('alertname="DiskFull"', True),
        ('alertname="diskfull"', False),  # case matters
        ('alertname="Disk"', False),
        ('missing=""', True),  # an absent label is the empty string
        ('empty=""', True),
        ('missing="x"', False),
        ('severity!="critical"', True),
        ('severity!="warning"', False),
        ('missing!=""', False),
        ('missing!="x"', True),
        ('instance=~"db"', False),  # anchored: "db" is not "db-1"
        ('instance=~"db-1"', True),
        ('instance=~"db.*"', True),
        ('instance=~"b-1"', False),  # anchored at the start too
        ('instance=~"db-"', False),
        ('instance=~"db-[0-9]+"', True),
        ('instance=~"db|db-1"', True),  # the whole alternation is anchored
        ('instance=~"web|db"', False),
        ('instance=~""', False),
        ('missing=~""', True),
        ('missing=~".+"', False),
        ('severity=~"warning|critical"', True),
        ('severity!~"warning|critical"', False),
        ('severity!~"warn"', True),  # "warn" does not match all of "warning"
        ('instance!~"db-.*"', False),
    ],
)
def test_matches(text: str, hit: bool) -> None:
    assert parse_matcher(text).matches(LABELS) is hit


def test_an_escaped_dot_in_a_quoted_regex_is_literal() -> None:
    m = parse_matcher('host=~"db\\\\.example\\\\.com"')
    assert m.matches({"host": "db.example.com"})
    assert not m.matches({"host": "dbxexample.com"})


def test_a_regex_must_match_the_whole_value_even_across_lines() -> None:
    m = parse_matcher('msg=~"a.*"')
    assert m.matches({"msg": "a\nb"})  # . matches a newline, as in Go's RE2 with (?s)
    assert not parse_matcher('msg=~"a"').matches({"msg": "a\n"})  # no $-before-newline slack


def test_matches_all() -> None:
    ms = (parse_matcher('alertname="DiskFull"'), parse_matcher('instance=~"db-.*"'))
    assert matches_all(ms, LABELS)
    assert not matches_all((*ms, parse_matcher('severity="critical"')), LABELS)
    assert matches_all((), {})


@pytest.mark.parametrize(
    "text,silence",
    [
        (
            'instance="db-1"',
            {"name": "instance", "value": "db-1", "isRegex": False, "isEqual": True},
        ),
        (
            'instance!="db-1"',
            {"name": "instance", "value": "db-1", "isRegex": False, "isEqual": False},
        ),
        (
            'instance=~"db-.*"',
            {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True},
        ),
        (
            'instance!~"db-.*"',
            {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": False},
        ),
        ('msg="a \\"b\\""', {"name": "msg", "value": 'a "b"', "isRegex": False, "isEqual": True}),
    ],
)
def test_to_silence(text: str, silence: dict[str, object]) -> None:
    assert parse_matcher(text).to_silence() == silence


@given(st.text())
def test_a_json_quoted_value_round_trips(value: str) -> None:
    m = parse_matcher(f"label={json.dumps(value)}")
    assert (m.name, m.op, m.value) == ("label", "=", value)
    assert m.matches({"label": value})
    assert m.to_silence()["value"] == value
