"""Hostile label sets reach PromQL in the warm start's and the seasonal re-check's history
queries (``selector_of``): every value must read back as exactly itself, and no label name
may add matchers of its own. Parsed with promql_parser (the backtest's parser); the real
Prometheus lexer is exercised in tests/integration/test_warm_start_weekly.py."""

from __future__ import annotations

import numpy as np
import promql_parser
import pytest

from detector.warmstart.prometheus import parse_matrix, promql_string, selector_of

HOSTILE_VALUES = [
    "",
    "plain",
    'a"b',
    "a\\b",
    "trailing\\",
    'x"}[1h] or vector(1) #',
    "line\nbreak",
    "cr\rtab\tnul\x00del\x7f",
    "\ufffd",  # Prometheus's lexer reads a raw U+FFFD as an invalid rune
    "\ufeffbom",
    "\u2028sep",
    "caf\u00e9 \U0001f600",
    "\\u0041 \\x41 \\101",  # escape-like text stays text
    "`raw`'single'",
    "v" * 16384,
    "\U0010ffff",
]


def _matchers(selector: str) -> list[tuple[str, str, str]]:
    expr = promql_parser.parse(selector)
    assert isinstance(expr, promql_parser.VectorSelector)
    return [(m.name, str(m.op), m.value) for m in expr.matchers.matchers]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_a_hostile_value_reads_back_as_itself(value: str) -> None:
    labels = (("__name__", "up"), ("path", value))
    selector = selector_of(labels)
    equal = str(promql_parser.MatchOp.Equal)
    assert _matchers(selector) == [("__name__", equal, "up"), ("path", equal, value)]
    assert selector.isascii() and all(c >= " " for c in selector)  # no raw control, no U+FFFD


def test_plain_values_are_not_escaped() -> None:
    assert promql_string("GET /api/v1 [x]{y}") == '"GET /api/v1 [x]{y}"'
    assert promql_string("\ufffd") == '"\\ufffd"'
    assert promql_string("\U0001f600") == '"\\U0001f600"'


@pytest.mark.parametrize(
    "name",
    ['__name__=~".+",b!', "b!", "1abc", "foo.bar", "a-b", "caf\u00e9", 'x"y', "a b", "{}"],
)
def test_a_name_that_is_not_an_identifier_adds_no_matcher(name: str) -> None:
    # quoted as Prometheus 3 reads UTF-8 names; before, `__name__=~".+",b!` and the value
    # "x" made the selector {__name__=~".+",b!="x"}: every series in Prometheus
    selector = selector_of(((name, "x"),))
    assert _matchers(selector) == [(name, str(promql_parser.MatchOp.Equal), "x")]


def test_identifier_names_stay_bare() -> None:
    assert selector_of((("__name__", "up"), ("_a9", "1"))) == '{__name__="up", _a9="1"}'


def test_an_empty_value_means_absent_in_the_answer() -> None:
    # Prometheus keeps no empty label: its answer for {a="1", b=""} names only a
    result: list[dict[str, object]] = [
        {"metric": {"a": "1"}, "values": [[1.0, "5"]]},
        {"metric": {"a": "1", "b": "2"}, "values": [[1.0, "6"]]},
    ]
    ts, bits = parse_matrix(result, (("a", "1"), ("b", "")))
    assert ts.tolist() == [1000] and bits.view(np.float64).tolist() == [5.0]
