"""The URL allow-list and URL templates (issue 21): scheme, host and port compare exactly,
paths on segment boundaries after dot segments are resolved, userinfo never passes, and a
label value stays one path segment or one query value."""

from __future__ import annotations

import pytest

from remediator.catalog import urls
from remediator.catalog.urls import UrlError, UrlTemplate, allowed

HOOK = "http://127.0.0.1:8080/hook/"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook/",
        "http://127.0.0.1:8080/hook",
        "http://127.0.0.1:8080/hook/x",
        "http://127.0.0.1:8080/hook/a/b?c=d#e",
        "HTTP://127.0.0.1:8080/hook/x",
        "http://127.0.0.1:8080/hook/a/../b",
        "http://127.0.0.1:8080/hook/./x",
        "http://127.0.0.1:8080/h%6fok/x",
    ],
)
def test_urls_under_the_prefix_are_allowed(url: str) -> None:
    assert allowed(url, [HOOK])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooked",
        "http://127.0.0.1:8080/admin",
        "http://127.0.0.1:8080/hook/../admin/users/delete?all=true",
        "http://127.0.0.1:8080/hook/%2e%2e/admin",
        "http://127.0.0.1:8080/hook/%2E%2e/admin",
        "http://127.0.0.1:8080/hook/services/../../../admin/users/delete?all=true&x=/status",
        "http://127.0.0.1:8081/hook/x",
        "https://127.0.0.1:8080/hook/x",
        "http://127.0.0.2:8080/hook/x",
        "http://user@127.0.0.1:8080/hook/x",
        "http://127.0.0.1:8080\\@evil.net/hook/x",
        "http://127.0.0.1:8080/hook/a b",
        "http://127.0.0.1:8080/hook/\nx",
        "ftp://127.0.0.1:8080/hook/",
        "/hook/x",
        "http://127.0.0.1:99999/hook/",
        "http://127.0.0.1:8080x/hook/",
        "",
    ],
)
def test_urls_off_the_prefix_are_refused(url: str) -> None:
    assert not allowed(url, [HOOK])


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com.evil.net/",
        "https://hooks.example.com@evil.net/",
        "https://hooks.example.com:444/",
        "https://evil.net/hooks.example.com",
        "https://hooks.example.com%2eevil.net/",
    ],
)
def test_a_prefix_without_a_slash_does_not_let_the_host_change(url: str) -> None:
    assert not allowed(url, ["https://hooks.example.com"])
    assert allowed("https://hooks.example.com/x", ["https://hooks.example.com"])
    assert allowed("https://HOOKS.example.com:443/x", ["https://hooks.example.com"])


def test_a_prefix_that_does_not_parse_allows_nothing() -> None:
    assert not allowed("https://a.example/x", ["https://user@a.example/", "not a url"])


def test_dot_segments_resolve_as_rfc_3986_says() -> None:
    assert urls.resolve_dots(["a", "b", "..", "c"]) == ("a", "c")
    assert urls.resolve_dots(["..", "..", "a"]) == ("a",)
    assert urls.resolve_dots(["a", "%2e%2E"]) == ("",)
    assert urls.parse("http://h/a/./b/").path == "/a/b/"


# --- templates ----------------------------------------------------------------------
TEMPLATE = UrlTemplate.compile(["http://127.0.0.1:8080/hook/services/", "/status?x=", ""])


@pytest.mark.parametrize(
    "service",
    [
        "../../../admin/users/delete?all=true&x=",
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        "%252e%252e",
        "a/../..",
        "..\\..",
        "x?y",
        "x#y",
        "%3fx",
    ],
)
def test_a_value_that_would_leave_its_path_segment_is_refused(service: str) -> None:
    with pytest.raises(UrlError):
        TEMPLATE.render([service, "1"])


@pytest.mark.parametrize(
    "service,query,url",
    [
        ("web", "1", "http://127.0.0.1:8080/hook/services/web/status?x=1"),
        (
            "a/b c",
            "x&y=z#w",
            "http://127.0.0.1:8080/hook/services/a%2Fb%20c/status?x=x%26y%3Dz%23w",
        ),
        ("ünï", "+%", "http://127.0.0.1:8080/hook/services/%C3%BCn%C3%AF/status?x=%2B%25"),
        ("...", "", "http://127.0.0.1:8080/hook/services/.../status?x="),
    ],
)
def test_values_are_percent_encoded_per_component(service: str, query: str, url: str) -> None:
    assert TEMPLATE.render([service, query]) == url
    assert urls.allowed(url, [HOOK])


def test_an_empty_path_segment_from_a_template_is_refused() -> None:
    with pytest.raises(UrlError, match="empty"):
        TEMPLATE.render(["", "1"])


@pytest.mark.parametrize(
    "literals",
    [
        ["", "/x"],
        ["http://", "/x"],
        ["http://h:", "/x"],
        ["http://", "@h/x"],
        ["http://h", "/x"],
        ["htt", "://h/x"],
    ],
)
def test_a_template_in_scheme_userinfo_host_or_port_is_refused(literals: list[str]) -> None:
    with pytest.raises(UrlError, match="template #1 stands in the URL's"):
        UrlTemplate.compile(literals)


def test_invalid_unicode_is_refused() -> None:
    with pytest.raises(UrlError, match="not valid Unicode"):
        TEMPLATE.render(["\ud800", "1"])
