"""``vigil-detector backtest``: argv -> the replay of each config over the range -> the
table, the JSON document and the charts. The shell: it reads (``source``), writes files
and stderr, and leaves every decision to the pure modules.

Two passes over Prometheus. The first streams every selected series chunk by chunk
through one ``Replay`` per config and keeps only the alert events, so memory is bounded
by a chunk (and the pages found), whatever the range. The second reads again only the
series charted (the top ones of each config), one at a time, and replays each alone to
draw it: series are independent slots, so it sees exactly what the first pass saw (its
pages are checked against the first pass's).

Exit codes: 0 the report was written; 1 a problem running it (Prometheus refused or
unreachable, nothing matched, an output file could not be written); 2 usage (flags,
config file, selector).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
from numpy.typing import NDArray

from detector.alerting.state import AlertEvent
from detector.backtest import chart, escaping, render, source, span, tally
from detector.backtest.progress import Progress
from detector.backtest.replay import Readings, Replay, SeriesBlock
from detector.config import DetectorConfig, load_config
from detector.errors import ConfigError, UpstreamError
from detector.series.registry import Labels
from servicekit.durations import DurationError, parse_duration

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
DEFAULT_WARMUP = "6h"

DESCRIPTION = """\
What would this config have paged on? Reads the selected series from Prometheus over
--range (ending at --end, default now), replays them through the detector exactly as the
service runs them (series rules, detector families, alert rules, staleness) in sample
time, and reports every alert that would have fired: rule, series, start, end, peak
score, the value against its band when it fired, and how it resolved; pages per day per
rule; the series that page most. With --out, also a JSON report and an SVG chart per
top series. --compare runs a second config over the same history, side by side.

--step should be the series' scrape interval: the alert rules' for_s and resolve_s count
samples' own intervals, as they do in the service. Before the range, --warmup of history
is learned as the service's warm start would (pages there are not counted).

Exit codes: 0 report written, 1 a problem running it, 2 usage.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backtest",
        help="replay a config over history: what would it have paged on?",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the detector config to try"
    )
    b.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="Prometheus (or a compatible API) holding the history",
    )
    b.add_argument(
        "--range",
        dest="range_",
        default="7d",
        metavar="DURATION",
        help="how much history, e.g. 7d, 36h (default 7d)",
    )
    b.add_argument(
        "--end", metavar="TIME", help="end of the range: unix seconds or RFC 3339 (default: now)"
    )
    b.add_argument(
        "--match",
        default=source.DEFAULT_MATCH,
        metavar="SELECTOR",
        help="PromQL series selector, e.g. 'http_request_duration_seconds"
        "{job=\"api\"}' (default: every series; the config's rules decide "
        "which are tracked)",
    )
    b.add_argument(
        "--step",
        default="1m",
        metavar="DURATION",
        help="sample spacing, ideally the scrape interval (default 1m, at least 5s)",
    )
    b.add_argument(
        "--warmup",
        default=DEFAULT_WARMUP,
        metavar="DURATION",
        help="history learned before the range, not counted (default 6h, "
        "the warm start's; 0: start cold)",
    )
    b.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write backtest.json and one SVG chart per top series here",
    )
    b.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER_CONFIG",
        help="a second config to run over the same history, side by side",
    )
    b.add_argument(
        "--top", type=int, default=10, metavar="N", help="series listed in the table (default 10)"
    )
    b.add_argument(
        "--charts",
        type=int,
        default=5,
        metavar="N",
        help="series charted per config with --out (default 5)",
    )
    b.add_argument(
        "--timeout", default="60s", metavar="DURATION", help="per range query (default 60s)"
    )


@dataclass(frozen=True, slots=True)
class Options:
    """The parsed flags."""

    configs: tuple[tuple[str, DetectorConfig], ...]
    prometheus: str
    span: span.Span
    selector: str
    out: Path | None
    top: int
    charts: int
    timeout_s: float


def _seconds(text: str, flag: str) -> float:
    try:
        value = parse_duration(text)
    except DurationError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    return value


def parse_options(args: argparse.Namespace, *, now_s: float) -> Options:
    """Flags -> Options; ConfigError (usage) with the flag's name otherwise."""
    configs = [(str(args.config), load_config(args.config))]
    if args.compare is not None:
        configs.append((str(args.compare), load_config(args.compare)))
    if args.top < 1 or args.charts < 0:
        raise ConfigError("--top must be 1 or more and --charts 0 or more")
    try:
        grid = span.build_span(
            end_s=span.parse_end(args.end, now_s=now_s),
            range_s=_seconds(args.range_, "--range"),
            step_s=_seconds(args.step, "--step"),
            lead_s=_seconds(args.warmup, "--warmup"),
        )
    except span.SpanError as exc:
        raise ConfigError(str(exc)) from None
    timeout_s = _seconds(args.timeout, "--timeout")
    if timeout_s <= 0:
        raise ConfigError("--timeout must be positive")
    if not args.prometheus.startswith(("http://", "https://")):
        raise ConfigError(f"--prometheus {args.prometheus!r}: expected an http:// or https:// URL")
    return Options(
        configs=tuple(configs),
        prometheus=args.prometheus,
        span=grid,
        selector=source.check_selector(args.match),
        out=args.out,
        top=args.top,
        charts=args.charts,
        timeout_s=timeout_s,
    )


class Reader(Protocol):
    """What the passes need of ``source.RangeReader`` (a fake in the unit tests)."""

    queries: int

    def read(self, query: str, chunk: span.Chunk, *, step_ms: int) -> list[SeriesBlock]: ...


@dataclass
class _Config:
    """One config's first-pass replay and its tally."""

    name: str
    cfg: DetectorConfig
    replay: Replay
    tally: tally.Tally
    events: list[AlertEvent] = field(default_factory=list)

    def drain(self) -> None:
        if self.events:
            self.tally.apply(self.events)
            self.events.clear()


def _build(
    name: str,
    cfg: DetectorConfig,
    *,
    grid: span.Span,
    on_readings: Callable[[Readings], None] | None = None,
) -> _Config:
    events: list[AlertEvent] = []
    replay = Replay(cfg, on_events=events.extend, on_readings=on_readings)
    return _Config(
        name=name,
        cfg=cfg,
        replay=replay,
        events=events,
        tally=tally.Tally(
            cfg.alerts,
            start_ms=grid.start_ms,
            end_ms=grid.end_ms,
            labels_of=replay.labels_of,
            rule_of=replay.rule_of,
        ),
    )


def _stream(
    reader: Reader,
    query: str,
    *,
    grid: span.Span,
    feed: Callable[[list[SeriesBlock], NDArray[np.int64]], None],
    progress: Progress | None = None,
) -> int:
    """Read ``query`` chunk by chunk and ``feed`` each; the largest series count seen."""
    index, n_series, most = 0, 0, 0
    while (chunk := span.next_chunk(grid, index=index, n_series=n_series)) is not None:
        blocks = reader.read(query, chunk, step_ms=grid.step_ms)
        n_series = len(blocks)
        most = max(most, n_series)
        feed(
            blocks,
            grid.first_ms
            + np.arange(chunk.index, chunk.index + chunk.n_points, dtype=np.int64) * grid.step_ms,
        )
        index += chunk.n_points
        if progress is not None:
            progress.update(chunk.end_ms - grid.first_ms, f"{n_series} series")
    return most


def first_pass(opts: Options, reader: Reader, progress: Progress) -> tuple[list[_Config], int]:
    runs = [_build(name, cfg, grid=opts.span) for name, cfg in opts.configs]

    def feed(blocks: list[SeriesBlock], grid_ms: NDArray[np.int64]) -> None:
        for run in runs:
            run.replay.feed(blocks, grid_ms=grid_ms)
            run.drain()

    most = _stream(reader, opts.selector, grid=opts.span, feed=feed, progress=progress)
    for run in runs:
        run.replay.finish(opts.span.end_ms + opts.span.step_ms)
        run.drain()
    return runs, most


def chart_series(
    opts: Options, reader: Reader, *, name: str, cfg: DetectorConfig, labels: Labels
) -> tuple[chart.Trace, tally.Outcome]:
    """Replay one series alone and keep its trace (the second pass)."""
    grid = opts.span
    trace = chart.Trace(start_ms=grid.start_ms, end_ms=grid.end_ms)

    def record(r: Readings) -> None:
        trace.add(r.ts_ms, r.seen, r.score, r.lower, r.upper)

    run = _build(name, cfg, grid=grid, on_readings=record)

    def feed(blocks: list[SeriesBlock], grid_ms: NDArray[np.int64]) -> None:
        run.replay.feed([b for b in blocks if b.labels == labels], grid_ms=grid_ms)
        run.drain()

    _stream(reader, source.exact_selector(labels), grid=grid, feed=feed)
    run.replay.finish(grid.end_ms + grid.step_ms)
    run.drain()
    return trace, run.tally.outcome()


def _write_charts(
    opts: Options, reader: Reader, *, k: int, run: _Config, outcome: tally.Outcome, err: TextIO
) -> list[tuple[tally.SeriesPages, str]]:
    assert opts.out is not None
    written = []
    for rank, top in enumerate([s for s in outcome.top if s.pages][: opts.charts], start=1):
        try:
            trace, alone = chart_series(opts, reader, name=run.name, cfg=run.cfg, labels=top.series)
        except ConfigError as exc:  # its exact selector would not parse: no chart
            err.write(
                f"vigil-detector backtest: warning: no chart for "
                f"{escaping.clip(escaping.series_text(top.series), 80)}: "
                f"{escaping.printable(str(exc))}\n"
            )
            continue
        pages = [
            p for p in alone.pages if p.series == top.series and p.rule_index == top.rule_index
        ]
        counted = sum(1 for p in pages if not p.before_range)
        if counted != top.pages:
            err.write(
                f"vigil-detector backtest: warning: replayed alone, "
                f"{escaping.clip(escaping.series_text(top.series), 80)} paged "
                f"{counted} times, not {top.pages}\n"
            )
        rule = run.cfg.alerts[top.rule_index]
        svg = chart.render_svg(
            trace,
            labels=top.series,
            pages=pages,
            thresholds=chart.thresholds_of([lv.score for lv in rule.severities]),
            subtitle=f"{run.name}: rule {top.rule}, {top.pages} "
            f"page{'' if top.pages == 1 else 's'}",
        )
        file_name = f"config{k + 1}-series{rank:02d}.svg"  # never a label in a path
        (opts.out / file_name).write_text(svg, encoding="utf-8")
        written.append((top, file_name))
    return written


def run(
    opts: Options,
    *,
    stdout: TextIO,
    stderr: TextIO,
    reader: Reader | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    t0 = monotonic()
    if reader is None:
        reader = source.RangeReader(
            opts.prometheus, timeout_s=opts.timeout_s, outgoing_tls=opts.configs[0][1].outgoing_tls
        )
    if opts.out is not None:
        opts.out.mkdir(parents=True, exist_ok=True)
    grid = opts.span
    progress = Progress(
        stderr, total_ms=grid.end_ms - grid.first_ms, label="backtest", monotonic=monotonic
    )
    runs, most = first_pass(opts, reader, progress)
    progress.close(f"{runs[0].replay.counts.series_seen} series, {reader.queries} queries")
    if most == 0:
        stderr.write(
            f"vigil-detector backtest: no series matched "
            f"{escaping.printable(opts.selector)} between "
            f"{render.iso(grid.first_ms)} and {render.iso(grid.end_ms)}\n"
        )
        return EXIT_PROBLEM
    reports = []
    outcomes = [r.tally.outcome() for r in runs]
    for k, (r, outcome) in enumerate(zip(runs, outcomes, strict=True)):
        charts = (
            _write_charts(opts, reader, k=k, run=r, outcome=outcome, err=stderr)
            if opts.out is not None and opts.charts
            else []
        )
        reports.append(
            render.Run(config=r.name, counts=r.replay.counts, outcome=outcome, charts=tuple(charts))
        )
    comparison = tally.compare(outcomes[0], outcomes[1]) if len(outcomes) == 2 else None
    setup = render.Setup(
        span=grid,
        selector=opts.selector,
        prometheus=opts.prometheus,
        queries=reader.queries,
        seconds=monotonic() - t0,
    )
    stdout.write(render.table(setup, reports, comparison, top=opts.top))
    if opts.out is not None:
        doc = render.document(setup, reports, comparison, top=opts.top)
        (opts.out / "backtest.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="ascii")
        stdout.write(
            f"wrote {escaping.printable(str(opts.out / 'backtest.json'))} and "
            f"{sum(len(r.charts) for r in reports)} charts\n"
        )
    return EXIT_OK


def main(
    args: argparse.Namespace,
    *,
    now_s: float | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The subcommand's entry: parse, run, map errors to exit codes."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        opts = parse_options(args, now_s=time.time() if now_s is None else now_s)
    except ConfigError as exc:
        err.write(f"vigil-detector backtest: {escaping.printable(str(exc))}\n")
        return EXIT_USAGE
    try:
        return run(opts, stdout=out, stderr=err)
    except (source.QueryError, UpstreamError) as exc:
        err.write(f"vigil-detector backtest: {escaping.printable(str(exc))}\n")
        return EXIT_PROBLEM
    except OSError as exc:
        err.write(
            f"vigil-detector backtest: cannot write the report: {escaping.printable(str(exc))}\n"
        )
        return EXIT_PROBLEM


def build_arg_parser() -> argparse.ArgumentParser:
    """A parser holding only this subcommand (tests; ``python -m detector`` adds it to
    its own)."""
    parser = argparse.ArgumentParser(prog="vigil-detector")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def entry(argv: Sequence[str]) -> int:
    return main(build_arg_parser().parse_args(["backtest", *argv]))
