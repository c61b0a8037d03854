"""Prometheus rule files evaluated over history, by a real Prometheus and promtool.

This module owns the Prometheus side of ``bench/grafana_compare.py``: the rule-file
model (``load_rules``), the order in which recording rules can be backfilled
(``backfill_passes``), OpenMetrics output for ``promtool tsdb create-blocks-from
openmetrics``, a Prometheus process over a temp TSDB (``PrometheusProcess``), the
backfill of recording rules (``History.backfill``), range queries, and the firing
periods of an alerting rule (``firing_periods``). It knows no scenario and no detector.

How history is evaluated. Prometheus evaluates rules at wall-clock time only, so past
data is handled as its documentation says for new recording rules: ``promtool tsdb
create-blocks-from rules`` runs each recording rule as range queries against a running
Prometheus (at the group's ``interval``, else ``--eval-interval``) and writes blocks.
A rule that reads another recording rule's output needs that output in the TSDB first,
so the rules are backfilled in passes, in dependency order: after each pass the new
blocks are moved into the data directory and Prometheus is restarted to load them.
Alerting rules cannot be backfilled (``ALERTS`` is state, not a query): their expression
is run as a range query at the group's interval, and ``firing_periods`` applies ``for:``
as the rule manager does (pending from the first evaluation that returns the series,
firing once it has been returned at every evaluation for ``for``, inactive at the first
evaluation that does not return it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import yaml
from numpy.typing import NDArray

from servicekit import yamlsrc
from servicekit.durations import Seconds, format_duration


class RulesError(Exception):
    """A rule file cannot be used, or Prometheus/promtool failed; the message says which."""


# --------------------------------------------------------------------------- rule files


def _expr_text(value: Any) -> Any:
    # ``expr: 2`` is a valid rule (YAML reads a number); PromQL is text
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class Rule(pydantic.BaseModel, frozen=True, extra="forbid"):
    """One recording or alerting rule, as Prometheus 2.42 reads it."""

    record: str | None = None
    alert: str | None = None
    expr: pydantic.StrictStr
    for_s: Seconds = pydantic.Field(0.0, alias="for", ge=0.0)
    labels: dict[str, pydantic.StrictStr] = {}
    annotations: dict[str, pydantic.StrictStr] = {}

    @pydantic.field_validator("expr", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _expr_text(value)

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> Rule:
        if (self.record is None) == (self.alert is None):
            raise ValueError("a rule has exactly one of `record` and `alert`")
        if self.record is not None and (self.for_s or self.annotations):
            raise ValueError("`for` and `annotations` belong to alerting rules")
        return self

    @property
    def name(self) -> str:
        return self.record if self.record is not None else str(self.alert)


class RuleGroup(pydantic.BaseModel, frozen=True, extra="forbid"):
    name: str
    interval: Seconds | None = pydantic.Field(None, gt=0.0)
    limit: int | None = None
    rules: list[Rule]


class RuleFile(pydantic.BaseModel, frozen=True, extra="forbid"):
    groups: list[RuleGroup]


def load_rules(path: Path) -> RuleFile:
    """Read a Prometheus rule file; ``RulesError`` lists every problem as file:line."""
    try:
        return yamlsrc.load(path, RuleFile)
    except yamlsrc.YamlSourceError as exc:
        raise RulesError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Placed:
    """A recording rule and the group it comes from (its interval, its name)."""

    group: RuleGroup
    rule: Rule


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def referenced(expr: str, names: Iterable[str]) -> set[str]:
    """Which of ``names`` (recorded metric names) ``expr`` selects by name. Quoted strings
    are skipped; a series selected only through a ``__name__`` matcher is not seen."""
    return set(_IDENT.findall(_QUOTED.sub(" ", expr))) & set(names)


def backfill_passes(groups: Sequence[RuleGroup]) -> list[list[Placed]]:
    """The recording rules of ``groups`` in passes: a rule goes in the pass after the last
    one that records a name it reads (names recorded outside ``groups`` are taken as
    already in the TSDB). Raises ``RulesError`` on a cycle."""
    placed = [Placed(g, r) for g in groups for r in g.rules if r.record is not None]
    recorders: dict[str, list[int]] = {}
    for i, p in enumerate(placed):
        recorders.setdefault(p.rule.name, []).append(i)
    needs = [
        sorted({j for n in referenced(p.rule.expr, recorders) for j in recorders[n]})
        for p in placed
    ]
    level: dict[int, int] = {}

    def visit(i: int, path: tuple[int, ...]) -> int:
        if i in path:
            cycle = " -> ".join(placed[k].rule.name for k in (*path[path.index(i) :], i))
            raise RulesError(f"recording rules read each other in a cycle: {cycle}")
        if i not in level:
            level[i] = 1 + max((visit(j, (*path, i)) for j in needs[i]), default=-1)
        return level[i]

    for i in range(len(placed)):
        visit(i, ())
    passes: list[list[Placed]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for i, p in enumerate(placed):
        passes[level[i]].append(p)
    return passes


def pass_file(rules: Sequence[Placed]) -> str:
    """A rule file holding ``rules`` in their own groups (same names and intervals)."""
    groups: dict[str, dict[str, Any]] = {}
    owner: dict[str, RuleGroup] = {}
    for p in rules:
        if owner.setdefault(p.group.name, p.group) is not p.group:
            raise RulesError(f"two rule groups are named {p.group.name!r}; rename one")
        g = groups.setdefault(p.group.name, {"name": p.group.name, "rules": []})
        if p.group.interval is not None:
            g["interval"] = format_duration(p.group.interval)
        rule: dict[str, Any] = {"record": p.rule.record, "expr": p.rule.expr}
        if p.rule.labels:
            rule["labels"] = dict(p.rule.labels)
        g["rules"].append(rule)
    return str(yaml.safe_dump({"groups": list(groups.values())}, sort_keys=False))


# --------------------------------------------------------------------------- OpenMetrics


@dataclass(frozen=True, slots=True)
class OmSeries:
    """One series to write: its labels (without ``__name__``) and samples."""

    labels: Mapping[str, str]
    ts_ms: NDArray[np.int64]
    values: NDArray[np.float64]  # NaN is written as a plain NaN, not a staleness marker


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


BLOCK_MS = 2 * 3_600_000  # promtool's block duration


def write_openmetrics(
    directory: Path, families: Mapping[tuple[str, str], Sequence[OmSeries]]
) -> list[Path]:
    """Write ``{(metric name, "gauge" | "counter"): series}`` as OpenMetrics text, one file
    per 2-hour block (``promtool tsdb create-blocks-from openmetrics`` reads its whole
    input once for every block it writes, so one big file costs blocks x size); a
    counter's name must end in ``_total``. Returns the files that hold samples."""
    directory.mkdir(parents=True, exist_ok=True)
    starts = sorted(
        {
            int(t) // BLOCK_MS
            for ss in families.values()
            for s in ss
            for t in (s.ts_ms[:1].tolist() + s.ts_ms[-1:].tolist())
        }
    )
    blocks = range(starts[0], starts[-1] + 1) if starts else range(0)
    files = {b: (directory / f"block-{b}.om").open("w", encoding="utf-8") for b in blocks}
    counts = dict.fromkeys(blocks, 0)
    try:
        for (name, kind), series in families.items():
            if kind not in ("gauge", "counter") or not _LABEL_NAME.fullmatch(name):
                raise RulesError(f"OpenMetrics family {name!r}: bad name or type {kind!r}")
            family = name.removesuffix("_total") if kind == "counter" else name
            if kind == "counter" and family == name:
                raise RulesError(f"counter {name!r}: the sample name must end in _total")
            for out in files.values():
                out.write(f"# TYPE {family} {kind}\n")
            for s in series:
                bad = [k for k in s.labels if not _LABEL_NAME.fullmatch(k)]
                if bad or s.ts_ms.shape != s.values.shape:
                    raise RulesError(
                        f"{name}{dict(s.labels)}: bad label names {bad} or "
                        f"{s.ts_ms.shape[0]} timestamps for "
                        f"{s.values.shape[0]} values"
                    )
                head = (
                    name
                    + "{"
                    + ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels.items())
                    + "} "
                )
                which = s.ts_ms // BLOCK_MS
                cuts = np.flatnonzero(np.diff(which)) + 1
                for lo, hi in zip(
                    [0, *cuts.tolist()], [*cuts.tolist(), s.ts_ms.shape[0]], strict=True
                ):
                    if hi > lo:
                        b = int(which[lo])
                        files[b].writelines(
                            f"{head}{_number(v)} {t // 1000}.{t % 1000:03d}\n"
                            for t, v in zip(
                                s.ts_ms[lo:hi].tolist(), s.values[lo:hi].tolist(), strict=True
                            )
                        )
                        counts[b] += hi - lo
        for out in files.values():
            out.write("# EOF\n")
    finally:
        for out in files.values():
            out.close()
    kept = []
    for b in blocks:
        path = directory / f"block-{b}.om"
        if counts[b]:
            kept.append(path)
        else:
            path.unlink()
    return kept


# --------------------------------------------------------------------------- processes


def _run(argv: list[str], *, what: str, timeout_s: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RulesError(f"{what}: {' '.join(argv[:4])} ...: {exc}") from exc
    if done.returncode != 0:
        raise RulesError(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-3000:]}"
        )
    return done.stdout


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RulesError(f"{name} is not installed (Debian: apt-get install prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusProcess:
    """``prometheus`` over ``data_dir`` on a free loopback port, scraping nothing.

    Retention is ten years from the newest block, so backfilled history is kept; the
    global evaluation interval is ``eval_interval_s`` (rules themselves are never loaded:
    they are evaluated over history by promtool and range queries)."""

    def __init__(
        self, workdir: Path, *, eval_interval_s: float, ready_timeout_s: float = 120.0
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump({"global": {"evaluation_interval": format_duration(eval_interval_s)}})
        )
        self.ready_timeout_s = ready_timeout_s
        self.port = _free_port()
        self.log = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            _binary("prometheus"),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=10y",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RulesError(f"prometheus did not become ready at {self.url}:\n{tail}")
            time.sleep(0.1)  # polling interval while it opens the TSDB

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a range query's result."""

    labels: dict[str, str]
    ts_ms: NDArray[np.int64]
    values: NDArray[np.float64]


def _parse_matrix(body: bytes, *, expr: str) -> list[RangeSeries]:
    try:
        doc = json.loads(body)
        if doc.get("status") != "success" or doc["data"]["resultType"] != "matrix":
            raise RulesError(f"query {expr!r}: {doc.get('error', doc.get('status'))}")
        out = []
        for item in doc["data"]["result"]:
            pairs = item["values"]
            out.append(
                RangeSeries(
                    labels={str(k): str(v) for k, v in item["metric"].items()},
                    ts_ms=np.array([round(float(t) * 1000) for t, _ in pairs], dtype=np.int64),
                    values=np.array([float(v) for _, v in pairs], dtype=np.float64),
                )
            )
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesError(f"query {expr!r}: unexpected answer: {exc}") from exc


def query_range(
    url: str, expr: str, *, start_ms: int, end_ms: int, step_s: float, timeout_s: float = 600.0
) -> list[RangeSeries]:
    """``expr`` evaluated at ``start_ms``, ``start_ms + step``, ... up to ``end_ms``, in
    chunks of at most a day of steps (Prometheus caps a query at 11,000 points a series);
    the chunks' series are joined by their labels."""
    step_ms = round(step_s * 1000)
    chunk_ms = step_ms * max(1, 86_400_000 // step_ms)
    parts: dict[tuple[tuple[str, str], ...], list[RangeSeries]] = {}
    for c0 in range(start_ms, end_ms + 1, chunk_ms):
        c1 = min(c0 + chunk_ms - step_ms, end_ms)
        form = urllib.parse.urlencode(
            {
                "query": expr,
                "start": f"{c0 / 1000:.3f}",
                "end": f"{c1 / 1000:.3f}",
                "step": f"{step_s:g}s",
            }
        )
        req = urllib.request.Request(f"{url}/api/v1/query_range", data=form.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RulesError(f"query {expr!r} at {url}: {exc}") from exc
        for s in _parse_matrix(body, expr=expr):
            parts.setdefault(tuple(sorted(s.labels.items())), []).append(s)
    return [
        RangeSeries(
            labels=dict(key),
            ts_ms=np.concatenate([p.ts_ms for p in ps]),
            values=np.concatenate([p.values for p in ps]),
        )
        for key, ps in parts.items()
    ]


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing period of an alert: from the evaluation at which it turned firing to
    the first evaluation that no longer returned it (``None``: still firing at the last)."""

    start_ms: int
    end_ms: int | None


def firing_periods(
    active_ms: NDArray[np.int64], grid_ms: NDArray[np.int64], *, for_s: float
) -> list[Firing]:
    """Apply ``for:`` to an alert expression's results, as Prometheus's rule manager does.

    ``grid_ms`` are the rule's evaluation times (increasing); ``active_ms`` those at which
    the expression returned the series. A run of consecutive active evaluations starting
    at ``a`` is pending until an evaluation ``t`` with ``t - a >= for``, firing from ``t``,
    and resolved at the first inactive evaluation after it.
    """
    active = np.isin(grid_ms, active_ms)
    if active_ms.shape[0] and not np.isin(active_ms, grid_ms).all():
        raise RulesError("active evaluations off the evaluation grid")
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for_ms = round(for_s * 1000)
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        fire = a + int(np.searchsorted(grid_ms[a:b] - grid_ms[a], for_ms))
        if fire < b:
            out.append(
                Firing(int(grid_ms[fire]), int(grid_ms[b]) if b < grid_ms.shape[0] else None)
            )
    return out


def firing_mask(ts_ms: NDArray[np.int64], periods: Sequence[Firing]) -> NDArray[np.bool_]:
    """Which of ``ts_ms`` fall while the alert is firing (its state holds between
    evaluations, so a sample at or after a period's start and before its end)."""
    mask = np.zeros(ts_ms.shape[0], dtype=np.bool_)
    for p in periods:
        mask |= (ts_ms >= p.start_ms) & (
            ts_ms < (p.end_ms if p.end_ms is not None else np.iinfo(np.int64).max)
        )
    return mask


# --------------------------------------------------------------------------- history


def block_start(ts_ms: int) -> int:
    """The first 2-hour block boundary at or after ``ts_ms``: where a rule backfill can
    start. promtool 2.42 walks the range block by block and stops at the first block
    holding no evaluation time, so a start in a block's last minutes backfills nothing."""
    return -(-ts_ms // BLOCK_MS) * BLOCK_MS


class History:
    """A temp TSDB filled from OpenMetrics files, a Prometheus over it, and recording rules
    backfilled pass by pass. Use as a context manager (``with History(...) as h``)."""

    def __init__(
        self, workdir: Path, *, openmetrics: Sequence[Path], eval_interval_s: float = 60.0
    ) -> None:
        self.workdir = workdir
        self.openmetrics = list(openmetrics)
        self.eval_interval_s = eval_interval_s
        self.prometheus = PrometheusProcess(workdir, eval_interval_s=eval_interval_s)
        self.timings: dict[str, float] = {}

    def __enter__(self) -> History:
        """Fill the TSDB from the OpenMetrics files, then start Prometheus over it."""
        if any(self.prometheus.data_dir.iterdir()):
            raise RulesError(f"{self.prometheus.data_dir} is not empty: give a fresh workdir")
        t0 = time.perf_counter()
        for path in self.openmetrics:
            _run(
                [
                    _binary("promtool"),
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    "--quiet",
                    str(path),
                    str(self.prometheus.data_dir),
                ],
                what=f"promtool tsdb create-blocks-from openmetrics {path}",
                timeout_s=3600,
            )
        self.timings["openmetrics_s"] = time.perf_counter() - t0
        self.prometheus.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.prometheus.stop()

    @property
    def url(self) -> str:
        return self.prometheus.url

    def backfill(
        self, stages: Sequence[Sequence[RuleGroup]], *, start_ms: int, end_ms: int
    ) -> list[list[str]]:
        """Backfill every recording rule of ``stages`` over [start_ms, end_ms]: stage after
        stage (a later stage may read an earlier one's output in ways ``referenced``
        cannot see, such as a selector with no metric name), each in dependency passes.
        ``start_ms`` must be on a 2-hour block boundary (``block_start``). Returns the
        names recorded in each pass."""
        if start_ms % BLOCK_MS:
            raise RulesError(
                f"backfill from {start_ms}: not on a 2-hour block boundary (use block_start)"
            )
        done = []
        for k, groups in enumerate(stages):
            for i, rules in enumerate(backfill_passes(groups)):
                t0 = time.perf_counter()
                self._pass(rules, tag=f"s{k}p{i}", start_ms=start_ms, end_ms=end_ms)
                self.timings[f"stage{k}_pass{i}_s"] = time.perf_counter() - t0
                done.append([p.rule.name for p in rules])
        return done

    def _pass(self, rules: Sequence[Placed], *, tag: str, start_ms: int, end_ms: int) -> None:
        rule_file = self.workdir / f"pass-{tag}.yml"
        rule_file.write_text(pass_file(rules))
        out = self.workdir / f"blocks-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        # promtool takes whole seconds; rounding outward keeps every evaluation in range
        _run(
            [
                _binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "rules",
                "--quiet",
                f"--url={self.url}",
                f"--start={start_ms // 1000}",
                f"--end={-(-end_ms // 1000)}",
                f"--output-dir={out}",
                f"--eval-interval={format_duration(self.eval_interval_s)}",
                str(rule_file),
            ],
            what=f"promtool tsdb create-blocks-from rules ({tag})",
            timeout_s=7200,
        )
        for block in out.iterdir():
            block.rename(self.prometheus.data_dir / block.name)
        self.prometheus.restart()  # Prometheus loads new block directories when it opens

    def alert_periods(
        self, rule: Rule, group: RuleGroup, *, start_ms: int, end_ms: int
    ) -> Iterator[tuple[dict[str, str], list[Firing]]]:
        """Each series the alerting ``rule`` returned over [start_ms, end_ms], with its
        firing periods: the expression at the group's interval from ``start_ms``."""
        if rule.alert is None:
            raise RulesError(f"{rule.name}: not an alerting rule")
        step_s = group.interval or self.eval_interval_s
        step_ms = round(step_s * 1000)
        grid = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        for s in query_range(self.url, rule.expr, start_ms=start_ms, end_ms=end_ms, step_s=step_s):
            yield s.labels, firing_periods(s.ts_ms, grid, for_s=rule.for_s)
