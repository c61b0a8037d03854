"""servicekit.bearer: the one Authorization rule both services apply."""

from __future__ import annotations

import pytest

from servicekit import bearer

TOKEN = "tok.A-b_c~9+/="


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"Bearer   {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN}\t",
    ],
)
def test_the_scheme_is_case_insensitive_and_spaces_around_the_token_are_whitespace(header):
    assert bearer.parse_credential(header) == TOKEN
    assert bearer.is_authorized(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        f"Bearer{TOKEN}",
        f"Token {TOKEN}",
        f"Bearer {TOKEN} extra",
        f"Bearer\t{TOKEN}",
        f"Bearer {TOKEN}\x00",
        "Bearer caf\u00e9",
        "Bearer \udcff\udcfe",  # UTF-8, and bytes aiohttp surrogate-escapes
        "B\u00e9arer x",
    ],
)
def test_anything_else_is_no_credential(header):
    assert bearer.parse_credential(header) is None
    assert not bearer.is_authorized(header, TOKEN)


def test_a_wrong_or_partial_token_is_refused():
    assert not bearer.is_authorized(f"Bearer {TOKEN}x", TOKEN)
    assert not bearer.is_authorized(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not bearer.is_authorized("Bearer other", TOKEN)


def test_a_non_ascii_configured_token_never_matches_and_never_raises():
    assert not bearer.is_authorized("Bearer caf\u00e9", "caf\u00e9")
    assert not bearer.is_authorized("Bearer cafe", "caf\u00e9")


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "is empty"),
        ("caf\u00e9", "not ASCII"),
        ("two words", "spaces"),
        ("a\tb", "spaces"),
    ],
)
def test_a_token_that_could_never_be_presented_is_a_problem_never_shown(token, problem):
    found = bearer.token_problem(token)
    assert found is not None and problem in found
    assert token == "" or token not in found


def test_a_presentable_token_has_no_problem():
    assert bearer.token_problem(TOKEN) is None
