"""servicekit.cli and servicekit.probes: --version, help layout, the ready line, the probes."""

import argparse
import os

import pytest
from aiohttp import web

from servicekit import cli, probes
from servicekit.version import __version__


def test_version_flag_prints_prog_and_version(capsys):
    parser = argparse.ArgumentParser(prog="vigil-example")
    cli.add_version_flag(parser)
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"vigil-example {__version__}\n"


def test_help_keeps_the_examples_as_written():
    parser = argparse.ArgumentParser(
        prog="p",
        description="one\ntwo",
        epilog="examples:\n  p serve \\\n      --x 1",
        formatter_class=cli.HelpFormatter,
    )
    text = parser.format_help()
    assert "one\ntwo\n" in text and "examples:\n  p serve \\\n      --x 1" in text


@pytest.mark.parametrize(
    ("count", "noun", "text"),
    [
        (1, "playbook", "1 playbook"),
        (0, "playbook", "0 playbooks"),
        (3, "series rule", "3 series rules"),
        (2, "series", "2 series"),
    ],
)
def test_plural(count, noun, text):
    assert cli.plural(count, noun) == text


def test_ready_line_has_version_address_time_and_what_was_loaded():
    ticks = iter([100.0, 102.5])
    timer = cli.StartTimer(clock=lambda: next(ticks), age_s=lambda: 0.0)
    line = timer.ready_line(
        prog="vigil-x",
        urls=["http://127.0.0.1:9420"],
        loaded=["2 series rules", "15 series restored from checkpoint"],
    )
    assert line == (
        f"vigil-x {__version__} ready on http://127.0.0.1:9420 in 2.50 s: "
        "2 series rules, 15 series restored from checkpoint"
    )


async def test_probes_answer_under_both_names(aiohttp_client):
    ready = False

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def is_ready(request: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready else web.Response(status=503)

    app = web.Application()
    probes.add_routes(app.router, healthy=healthy, ready=is_ready)
    client = await aiohttp_client(app)
    for path in ("/healthz", "/-/healthy"):
        assert (await client.get(path)).status == 200
        assert (await client.head(path)).status == 200
    for path in ("/readyz", "/-/ready"):
        assert (await client.get(path)).status == 503
    ready = True
    for path in ("/readyz", "/-/ready"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.text() == "ready\n"


def test_the_timer_counts_from_the_process_start():
    timer = cli.StartTimer(clock=lambda: 50.0, age_s=lambda: 1.5)
    assert timer.elapsed_s() == 1.5


def test_process_age_reads_proc(tmp_path):
    (tmp_path / "self").mkdir()
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "self" / "stat").write_text(
        "42 (vigil (x) y) S " + " ".join(["0"] * 18) + f" {100 * ticks} 0 0\n"
    )
    (tmp_path / "uptime").write_text("103.25 400.0\n")
    assert cli.process_age_s(tmp_path) == pytest.approx(3.25)
    assert cli.process_age_s(tmp_path / "missing") == 0.0
    assert 0.0 < cli.process_age_s() < 3600  # this very test process, on Linux
