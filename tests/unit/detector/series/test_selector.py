import pytest

from detector.errors import SelectorError
from detector.series.selector import parse_selector


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        (
            '{__name__=~"http_.*", job="api"}',
            {"__name__": "http_requests_total", "job": "api"},
            True,
        ),
        ('{__name__=~"http_.*", job="api"}', {"__name__": "xhttp_requests", "job": "api"}, False),
        ('up{job!="a"}', {"__name__": "up", "job": "b"}, True),
        ('up{job!="a"}', {"__name__": "up", "job": "a"}, False),
        ('up{job!~"a|b"}', {"__name__": "up"}, True),
        ('up{env=""}', {"__name__": "up"}, True),
        ('up{env=""}', {"__name__": "up", "env": "prod"}, False),
        ("up", {"__name__": "up"}, True),
        ("{job='x\\'y'}", {"job": "x'y"}, True),
    ],
)
def test_selector_semantics_follow_promql(text, labels, hit):
    assert parse_selector(text).matches(labels) is hit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "matches every series"),
        ('{job=~".*"}', "matches every series"),
        ('{job="a"', "expected ',' or '}'"),
        ('{job=="a"}', "expected a quoted string"),
        ('{job=~"("}', "invalid regular expression"),
        ('up{job="a"} extra', "unexpected text"),
        ('{1job="a"}', "expected a label name"),
    ],
)
def test_bad_selectors_name_the_problem(text, message):
    with pytest.raises(SelectorError, match=message):
        parse_selector(text)
