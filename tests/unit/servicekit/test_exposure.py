"""servicekit.exposure: which addresses may run without tokens, and the verdicts."""

from __future__ import annotations

import pytest

from servicekit import exposure

OPEN = [exposure.Unguarded("POST /webhook", "auth.bearer_token_file, or VIGIL_X_TOKEN")]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "::ffff:127.0.0.1",
        "unix:/run/vigil.sock",
        "/run/vigil.sock",
    ],
)
def test_loopback_addresses_and_unix_sockets_are_local(host):
    assert exposure.is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "",
        "::",
        "[::]",
        "10.1.2.3",
        "192.168.0.1",
        "::ffff:10.0.0.1",
        "vigil.example.com",
        "localhost.evil",
        "128.0.0.1",
    ],
)
def test_everything_else_is_reachable_from_elsewhere(host):
    assert not exposure.is_loopback(host)


def test_no_token_on_a_public_address_is_refused_with_what_where_and_what_to_do():
    verdict = exposure.check(
        listen="0.0.0.0:9421", host="0.0.0.0", unguarded=OPEN, insecure_no_auth=False
    )
    assert verdict.warning is None and verdict.refusal is not None
    for part in (
        "0.0.0.0:9421",
        "POST /webhook",
        "VIGIL_X_TOKEN",
        "127.0.0.1",
        "--insecure-no-auth",
    ):
        assert part in verdict.refusal


def test_the_insecure_flag_starts_with_a_loud_warning():
    verdict = exposure.check(
        listen="0.0.0.0:9421", host="0.0.0.0", unguarded=OPEN, insecure_no_auth=True
    )
    assert verdict.refusal is None
    assert verdict.warning is not None and verdict.warning.startswith("INSECURE")
    assert "POST /webhook" in verdict.warning


def test_loopback_without_tokens_and_anything_with_tokens_starts_quietly():
    assert (
        exposure.check(
            listen="127.0.0.1:9421", host="127.0.0.1", unguarded=OPEN, insecure_no_auth=False
        )
        == exposure.Verdict()
    )
    assert (
        exposure.check(listen="0.0.0.0:9421", host="0.0.0.0", unguarded=[], insecure_no_auth=False)
        == exposure.Verdict()
    )
    assert (
        exposure.check(listen="0.0.0.0:9421", host="0.0.0.0", unguarded=[], insecure_no_auth=True)
        == exposure.Verdict()
    )


@pytest.mark.parametrize("host, insecure", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_an_unusable_token_refuses_the_start_on_any_address(host, insecure):
    verdict = exposure.check(
        listen=f"{host}:9421",
        host=host,
        unguarded=[],
        insecure_no_auth=insecure,
        tokens=[("the webhook token", "ok-token"), ("the admin token", "two words")],
    )
    assert verdict.refusal is not None and verdict.refusal.startswith("the admin token has")
    assert "two words" not in verdict.refusal
    assert (
        exposure.check(
            listen=f"{host}:9421",
            host=host,
            unguarded=[],
            insecure_no_auth=insecure,
            tokens=[("the admin token", None)],
        )
        == exposure.Verdict()
    )
