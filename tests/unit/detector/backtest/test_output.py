"""What the backtest shows: escaping per context, the SVG chart, the table and JSON, the
selector check, the progress bar, and the command end to end with an in-memory
Prometheus (detector.backtest.{escaping,chart,render,source,progress,cli})."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from detector.backtest import chart, cli, escaping, render, source, span, tally
from detector.backtest.progress import Progress
from detector.backtest.replay import ReplayCounts, SeriesBlock
from detector.config import AlertRule
from detector.errors import ConfigError, UpstreamError
from detector.warmstart.prometheus import selector_of

HOSTILE = 'pay\x1b[31m<b>&"x"</b>\n\u202eevil\\x1b\x00\x9b\ud800'
HOSTILE_LABELS = (("__name__", "lat"), ("job", "<script>alert(1)</script>"), ("team", HOSTILE))
# what a terminal could act on: C0/C1 controls, DEL, bidi and other format characters
# what a Prometheus can hold (valid UTF-8: no lone surrogate)
STORED = tuple((k, v.replace("\ud800", "")) for k, v in HOSTILE_LABELS)
TERMINAL_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def test_printable_makes_every_control_visible_and_unforgeable():
    out = escaping.printable(HOSTILE)
    assert not TERMINAL_UNSAFE.search(out) and "\n" not in out
    assert out == ('pay\\x1b[31m<b>&"x"</b>\\x0a\\u202eevil\\\\x1b\\x00\\x9b\\ud800')


def test_series_text_quotes_like_promql():
    assert escaping.series_text((("__name__", "up"),)) == "up"
    assert escaping.series_text((("job", 'a"b\\'),)) == '{job="a\\"b\\\\"}'
    text = escaping.series_text(HOSTILE_LABELS)
    assert text.startswith('lat{job="<script>alert(1)</script>", team="pay\\x1b[31m')
    assert not TERMINAL_UNSAFE.search(text)


def test_xml_text_escapes_markup():
    assert (
        escaping.xml_text("<a href='x'>&</a>\x00")
        == "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;\\x00"
    )


def _trace(start_ms=0, end_ms=3_600_000):
    t = chart.Trace(start_ms=start_ms, end_ms=end_ms, buckets=100)
    ts = np.arange(start_ms, end_ms + 1, 15_000, dtype=np.int64)
    seen = np.sin(ts / 600_000.0)
    seen[100:110] = 5.0
    score = np.where(seen > 2, 0.999999, 0.5)
    t.add(ts, seen, score, seen - 0.5, seen + 0.5)
    return t


def _page(series=HOSTILE_LABELS, fired_ms=1_500_000, ended_ms=1_700_000):
    return tally.Page(
        rule="VigilAnomaly",
        series=series,
        since_ms=fired_ms,
        fired_ms=fired_ms,
        ended_ms=ended_ms,
        resolution=tally.Resolution.BACK_IN_BAND,
        severity="critical",
        peak_score=0.9999999,
        score=0.99999,
        value=5.0,
        expected=0.0,
        lower=-0.5,
        upper=0.5,
    )


def test_the_chart_is_well_formed_svg_whatever_the_labels():
    svg = chart.render_svg(
        _trace(),
        labels=HOSTILE_LABELS,
        pages=[_page()],
        thresholds=[0.9999, 0.999999],
        subtitle="cfg\x1b]0;title\x07",
    )
    root = ET.fromstring(svg)  # parses: no raw markup or XML-invalid character got in
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<script" not in svg and "<b>" not in svg
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202e]", svg)
    texts = ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any('job="<script>alert(1)</script>"' in t and "\\x1b[31m" in t for t in texts)
    polygons = list(root.iter("{http://www.w3.org/2000/svg}polygon"))
    assert len(polygons) == 2  # the band and the value envelope, each one unbroken run
    shaded = [
        e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("fill") == "#e4572e"
    ]
    assert len(shaded) == 1


def test_a_trace_is_bounded_and_keeps_extremes():
    t = chart.Trace(start_ms=0, end_ms=7 * 86_400_000, buckets=50)
    ts = np.arange(0, 7 * 86_400_000 + 1, 60_000, dtype=np.int64)
    seen = np.zeros(ts.shape[0])
    seen[5000] = 9.0
    score = np.full(ts.shape[0], 0.1)
    score[5000] = 0.99
    t.add(ts, seen, score, seen - 1, seen + 1)
    t.add(
        np.array([-5, 8 * 86_400_000], dtype=np.int64),
        np.array([99.0, 99.0]),
        np.array([1.0, 1.0]),
        np.zeros(2),
        np.zeros(2),
    )  # outside: ignored
    assert t.value_max.shape == (50,)
    assert np.nanmax(t.value_max) == 9.0 and np.nanmax(t.score) == 0.99
    assert np.nanmin(t.lower) == -1.0
    np.testing.assert_allclose(
        chart.nines(np.array([0.999, 0.0, 1.0, np.nan])), [3.0, 0.0, chart.MAX_NINES, np.nan]
    )


def _run_and_setup():
    grid = span.build_span(end_s=1_764_547_200, range_s=2 * 86400, step_s=60, lead_s=0)
    page = _page(fired_ms=grid.start_ms + 86_400_000, ended_ms=grid.start_ms + 86_460_000)
    nan_page = tally.Page(
        **{
            **{f: getattr(page, f) for f in page.__slots__},
            "series": (("__name__", "b"),),
            "value": float("nan"),
            "ended_ms": None,
            "resolution": tally.Resolution.FIRING_AT_END,
        }
    )
    outcome = tally.summarise(
        [page, nan_page], (AlertRule(),), start_ms=grid.start_ms, end_ms=grid.end_ms
    )
    outcome = tally.Outcome(pages=outcome.pages, rules=outcome.rules, top=outcome.top)
    run = render.Run(config="a.yaml", counts=ReplayCounts(3, 2, 1, 0, 100), outcome=outcome)
    setup = render.Setup(
        span=grid, selector='{job="x"}', prometheus="http://p", queries=3, seconds=1.0
    )
    return setup, run


def test_the_table_shows_labels_without_control_characters():
    setup, run = _run_and_setup()
    text = render.table(setup, [run], None, top=5)
    assert not TERMINAL_UNSAFE.search(text)
    assert 'lat{job="<script>alert(1)</script>", team="pay\\x1b[31m' in text
    assert "firing at end" in text and "back in band" in text
    assert "0.9999999" in text  # never rounded up to 1


def test_the_json_keeps_labels_exact_in_ascii_and_nan_as_null():
    setup, run = _run_and_setup()
    doc = render.document(setup, [run], None, top=5)
    text = json.dumps(doc)
    assert text.isascii() and "NaN" not in text
    back = json.loads(text)
    alerts = back["runs"][0]["alerts"]
    assert alerts[0]["series"]["team"] == HOSTILE
    assert alerts[1]["fired_on"]["value"] is None and alerts[1]["ended"] is None
    assert back["runs"][0]["rules"][0]["pages"] == 2


@pytest.mark.parametrize(
    "text", ["up", 'http_requests_total{job="api", code=~"5.."}', '{__name__=~"bt_.*"}']
)
def test_a_vector_selector_is_accepted(text):
    assert source.check_selector(text) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sum(up)", "not a series selector"),
        ("up[5m]", "not a series selector"),
        ("rate(up[5m])", "not a series selector"),
        ("up offset 5m", "offset and @"),
        ("up @ 100", "offset and @"),
        ("{}", "not a PromQL selector"),
        ('up{job="a"', "not a PromQL selector"),
        ("x" * 5000, "more than"),
    ],
)
def test_other_promql_is_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        source.check_selector(text)


def test_exact_selector_escapes_label_values():
    text = source.exact_selector((("__name__", "lat"), ("team", 'a"b\\c\nd')))
    assert text == '{__name__="lat", team="a\\"b\\\\c\\nd"}'


def test_a_result_that_is_not_a_matrix_is_an_upstream_error():
    with pytest.raises(UpstreamError, match="not a range-query matrix"):
        source.parse_result([{"metric": {"a": 1}, "values": "x"}], "up")
    (block,) = source.parse_result(
        [{"metric": {"job": "x", "__name__": "up"}, "values": [[20, "2"], [10, "NaN"]]}], "up"
    )
    assert block.labels == (("__name__", "up"), ("job", "x"))
    assert block.ts_ms.tolist() == [10_000, 20_000] and np.isnan(block.values[0])
    (block,) = source.parse_result(
        [{"metric": {}, "values": [[5, "1"], [10, "2"], [99, "3"]]}],
        "up",
        window_ms=(10_000, 20_000),
    )
    assert block.ts_ms.tolist() == [10_000]  # what was not asked for is dropped
    for stamp in ("Infinity", "NaN", 1e300):
        with pytest.raises(UpstreamError, match="not a time"):
            source.parse_result([{"metric": {}, "values": [[stamp, "1"]]}], "up")


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_redraws_on_a_terminal_and_prints_lines_elsewhere():
    tty, clock = io.StringIO(), _Clock()
    p = Progress(tty, total_ms=100, label="backtest", is_tty=True, monotonic=clock)
    p.update(50)
    p.close("3 series")
    assert tty.getvalue().startswith("\r[" + "#" * 15 + "." * 15 + "] backtest:  50%")
    assert tty.getvalue().endswith("3 series\n")
    log, clock = io.StringIO(), _Clock()
    p = Progress(log, total_ms=100, label="backtest", is_tty=False, every_s=10, monotonic=clock)
    for step in range(1, 11):
        clock.t = step * 3.0
        p.update(step * 10)
    p.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 4  # at 3 s, 15 s, 27 s, the end


# --- the command, against an in-memory Prometheus ------------------------------------
class FakePrometheus:
    """Answers range queries from arrays, as query_range would (grid points only)."""

    def __init__(self, series):
        self.series = series
        self.queries = 0
        self.largest = 0

    def read(self, query, chunk, *, step_ms):
        self.queries += 1
        out = []
        for labels, (ts, vs) in self.series.items():
            if query != source.DEFAULT_MATCH and query != selector_of(labels):
                continue
            sel = (ts >= chunk.start_ms) & (ts <= chunk.end_ms)
            out.append(SeriesBlock(labels=labels, ts_ms=ts[sel], values=vs[sel]))
        self.largest = max(self.largest, sum(b.ts_ms.shape[0] for b in out))
        return out


def _args(tmp_path, *extra):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("{}\n")
    return cli.build_arg_parser().parse_args(
        [
            "backtest",
            "--config",
            str(cfg),
            "--prometheus",
            "http://127.0.0.1:1",
            "--range",
            "2d",
            "--end",
            "1764547200",
            "--warmup",
            "0",
            *extra,
        ]
    )


def test_the_command_reports_the_incident_writes_json_and_a_chart(tmp_path):
    end_ms = 1_764_547_200_000
    ts = np.arange(end_ms - 2 * 86_400_000, end_ms, 60_000, dtype=np.int64)
    rng = np.random.default_rng(7)
    lat = 0.2 + rng.normal(0, 0.005, ts.shape[0])
    lat[2000:2040] += 0.3
    quiet = 50 + rng.normal(0, 1, ts.shape[0])
    prom = FakePrometheus(
        {STORED: (ts, lat), (("__name__", "q"),): (ts, quiet), HOSTILE_LABELS: (ts, lat)}
    )  # not UTF-8: refused
    opts = cli.parse_options(_args(tmp_path, "--out", str(tmp_path / "out")), now_s=0)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.run(opts, stdout=stdout, stderr=stderr, reader=prom)
    assert code == 0, stderr.getvalue()
    doc = json.loads((tmp_path / "out" / "backtest.json").read_text())
    (run,) = doc["runs"]
    assert run["pages"] == 1 and run["alerts"][0]["series"] == dict(STORED)
    assert run["series"] == {"read": 3, "tracked": 2, "untracked": 0, "refused": 1}
    assert run["charts"] == [
        {"series": dict(STORED), "rule": "VigilAnomaly", "file": "config1-series01.svg"}
    ]
    ET.fromstring((tmp_path / "out" / "config1-series01.svg").read_text())
    assert not TERMINAL_UNSAFE.search(stdout.getvalue())
    assert "warning" not in stderr.getvalue()  # the chart's replay agreed
    assert prom.largest <= span.DEFAULT_SAMPLE_BUDGET


def test_compare_runs_both_configs_over_one_read(tmp_path):
    end_ms = 1_764_547_200_000
    ts = np.arange(end_ms - 2 * 86_400_000, end_ms, 60_000, dtype=np.int64)
    lat = 0.2 + np.random.default_rng(7).normal(0, 0.005, ts.shape[0])
    lat[2000:2040] += 0.3
    prom = FakePrometheus({(("__name__", "lat"),): (ts, lat)})
    strict = tmp_path / "strict.yaml"
    strict.write_text("alerts:\n  - for_s: 1h\n")
    opts = cli.parse_options(_args(tmp_path, "--compare", str(strict)), now_s=0)
    stdout = io.StringIO()
    assert cli.run(opts, stdout=stdout, stderr=io.StringIO(), reader=prom) == 0
    text = stdout.getvalue()
    assert re.search(r"pages\s+1\s+0\n", text)
    assert "A = " + str(tmp_path / "vigil.yaml") in text
    assert "series paging only under A: 1\n        1  lat\n" in text
    assert "series paging only under B: 0\n" in text


def test_nothing_matched_is_a_problem(tmp_path):
    opts = cli.parse_options(_args(tmp_path), now_s=0)
    stderr = io.StringIO()
    assert (
        cli.run(opts, stdout=io.StringIO(), stderr=stderr, reader=FakePrometheus({}))
        == cli.EXIT_PROBLEM
    )
    assert "no series matched" in stderr.getvalue()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--range", "7 days"], "--range"),
        (["--step", "1s"], "at least 5s"),
        (["--match", "sum(up)"], "not a series selector"),
        (["--end", "tomorrow"], "--end"),
        (["--top", "0"], "--top"),
    ],
)
def test_usage_errors_exit_2_with_the_flag_named(tmp_path, extra, message):
    stderr = io.StringIO()
    assert cli.main(_args(tmp_path, *extra), stderr=stderr) == cli.EXIT_USAGE
    assert message in stderr.getvalue()


class _Client:
    """Stands in for PrometheusConnect: raises or answers what it is given."""

    def __init__(self, outcome):
        self.outcome = outcome

    def custom_query_range(self, *args, **kwargs):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "error", "message"),
    [
        (requests.ConnectionError("refused"), source.QueryError, "unreachable"),
        (
            PrometheusApiClientException("HTTP Status Code 400 (b'bad')"),
            source.QueryError,
            "refused",
        ),
        (requests.JSONDecodeError("Expecting value", "<html>", 0), UpstreamError, "not JSON"),
        (KeyError("data"), UpstreamError, "no data.result"),
        ([{"values": []}], UpstreamError, "not a range-query matrix"),
    ],
)
def test_the_reader_names_what_went_wrong(outcome, error, message):
    reader = source.RangeReader("http://prometheus.invalid:9090")
    reader.client = _Client(outcome)
    with pytest.raises(error, match=message):
        reader.read("up", span.Chunk(0, 1, 60_000, 60_000), step_ms=60_000)


def test_a_failed_query_exits_1_with_the_reason(tmp_path, monkeypatch):
    def refuse(self, query, chunk, *, step_ms):
        raise source.QueryError("Prometheus at http://p unreachable: \x1b[2J refused")

    monkeypatch.setattr(source.RangeReader, "read", refuse)
    stderr = io.StringIO()
    assert cli.main(_args(tmp_path), stdout=io.StringIO(), stderr=stderr) == cli.EXIT_PROBLEM
    assert "unreachable" in stderr.getvalue()
    assert not TERMINAL_UNSAFE.search(stderr.getvalue().replace("\n", ""))
