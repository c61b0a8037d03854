"""The command-line conventions both programs share: ``--version``, help written for
users (a description and examples, laid out as written), and the one line a service
logs once it listens.

This module owns their wording and layout only; each program builds its own parser and
decides what it reports as loaded. It does no I/O of its own: the ready line is
returned for the caller to log.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from servicekit.version import __version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and example epilogs keep their lines; option help is wrapped."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version`` prints ``<prog> <version>`` (``vigil-detector 0.2.0.dev0``) and exits 0."""
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the version and exit",
    )


def program(
    prog: str, *, description: str, epilog: str
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """A program's parser (user-written help, ``--version``) and its required COMMAND."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser, sub


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A COMMAND whose help keeps the lines it was written with."""
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def plural(count: int, noun: str) -> str:
    """``plural(1, "playbook")`` -> ``1 playbook``; ``plural(3, "series rule")`` ->
    ``3 series rules``; ``series`` stays ``series``."""
    if count == 1 or noun.endswith("series"):
        return f"{count} {noun}"
    return f"{count} {noun}s"


def process_age_s(proc: Path = Path("/proc")) -> float:
    """How long ago this process started (Linux ``/proc``, 10 ms steps), so the startup
    line counts Python's imports too; 0.0 where ``/proc`` cannot tell."""
    try:
        stat = (proc / "self" / "stat").read_text(encoding="ascii")
        uptime_s = float((proc / "uptime").read_text(encoding="ascii").split()[0])
        # field 22, starttime in clock ticks after boot; the name before it may hold spaces
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime_s - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class StartTimer:
    """The time from the process's start to ready, for the one startup line. Built first
    thing in ``main``; ``age_s`` is how long the process had run by then."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        age_s: Callable[[], float] = process_age_s,
    ) -> None:
        self._clock = clock
        self._start = clock() - age_s()

    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def ready_line(self, *, prog: str, urls: Sequence[str], loaded: Sequence[str]) -> str:
        """``vigil-detector 0.2.0.dev0 ready on http://127.0.0.1:9420 in 2.31 s: 2 series
        rules, 1 alert rule, 1520 series restored from checkpoint``."""
        where = ", ".join(urls)
        what = f": {', '.join(loaded)}" if loaded else ""
        return f"{prog} {__version__} ready on {where} in {self.elapsed_s():.2f} s{what}"
