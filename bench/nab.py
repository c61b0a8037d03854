"""The Numenta Anomaly Benchmark: run Vigil's detectors over NAB's files and score them.

Our own implementation of NAB's published scoring (see ../shared/nab/README.md): labelled
windows, the scaled sigmoid, the probationary period, the three cost profiles, one
threshold per profile chosen by sweeping every distinct score of the corpus, and the
normalisation between the null and the perfect detector. ``tests/unit/bench`` checks it
reproduces the reference figures of NAB's windowed-Gaussian baseline.

    python -m bench.nab run --detector default --data DIR --out DIR [--output alerts|raw]
    python -m bench.nab score --results DIR/default --data DIR [--windows FILE] [--fold a|b]
    python -m bench.nab cv --data DIR [--detector NAME] [--results DIR/NAME] [--windows FILE]

``run`` streams every CSV under DIR through a fresh detector, one row at a time in file
order, and writes ``OUT/NAME/<category>/NAME_<file>.csv`` (timestamp,value,anomaly_score).
By default (``--output alerts``) the score column is what pages people, through the path
the service uses: the family's scores go through the default alert rule's lifecycle, and a
row carries the score of the sample on which an alert starts, 0 elsewhere (see
``bench.nabdetect``); the threshold sweep then picks the severity that pages.
``--output raw`` writes every sample's own score instead.
``score`` prints a table, and as its last line one JSON object with every figure.

``cv`` is leave-one-category-out cross-validation (see ``cross_validate``): each profile's
threshold is chosen on six categories and the seventh is scored at it, so the figure says
what a threshold fitted elsewhere earns on data it never saw; the in-sample figure (the
threshold chosen on everything, as ``score`` does) is printed beside it. Without
``--results`` it runs the detector first (into a temporary folder; ~3 s for the half).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROFILES = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
PROBATION = "probationary"


def scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: 2/(1+e^(5y)) - 1, and -1 beyond y = 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n: int) -> int:
    return min(math.floor(0.15 * n), 750)


@dataclass(frozen=True, slots=True)
class Point:
    """One scored row: its score, its sweep value and the window it belongs to."""

    score: float
    sweep: float  # credit if detected (inside a window) or cost (outside)
    window: object  # None outside windows, PROBATION, or a (file, index) key


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """NAB CSV -> (timestamps as written, values). Copes with CRLF and repeated stamps."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}:1: expected a 'timestamp,value' header, got {header}")
        for row in reader:
            if row:
                stamps.append(row[0].strip())
                values.append(float(row[1]))
    return stamps, values


def _stamp(text: str) -> str:
    """Windows are written with microseconds; data rows without."""
    return text.split(".")[0]


def file_points(
    name: str,
    stamps: Sequence[str],
    scores: Sequence[float],
    windows: Sequence[Sequence[str]],
    weights: tuple[float, float, float],
) -> list[Point]:
    """NAB's per-file sweep values for one profile (``weights`` = A_TP, A_FP, A_FN)."""
    a_tp, a_fp, _ = weights
    limits = [(_stamp(a), _stamp(b)) for a, b in windows]
    probation = probation_rows(len(stamps))
    points: list[Point] = []
    cur: int | None = None
    right = width = 0
    prev_right: int | None = None
    prev_width = 0
    next_window = 0
    for i, (stamp, score) in enumerate(zip(stamps, scores, strict=True)):
        if cur is None and next_window < len(limits) and stamp == limits[next_window][0]:
            cur = next_window
            next_window += 1
            end = limits[cur][1]
            right = next(j for j in range(i, len(stamps)) if stamps[j] == end)
            width = right - i + 1
        if cur is not None:
            sweep = scaled_sigmoid(-(right - i + 1) / width) * a_tp / scaled_sigmoid(-1.0)
        elif prev_right is None:
            sweep = -1.0 * a_fp
        else:
            sweep = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1)) * a_fp
        window: object = PROBATION if i < probation else (None if cur is None else (name, cur))
        points.append(Point(score, sweep, window))
        if cur is not None and i == right:
            prev_right, prev_width = right, width
            cur = None
    return points


@dataclass(frozen=True, slots=True)
class ProfileResult:
    threshold: float
    raw: float
    normalised: float
    tp: int
    fp: int
    fn: int


def sweep(
    points: Iterable[Point], n_windows: int, weights: tuple[float, float, float]
) -> ProfileResult:
    """Best threshold over every distinct score, and the normalised corpus score there."""
    _, _, a_fn = weights
    pts = list(points)
    parts: dict[object, float] = {}
    for p in pts:
        if p.window is not None and p.window != PROBATION:
            parts[p.window] = -a_fn
    fp_cost = 0.0
    best = (-math.inf, 1.1, 0, 0)
    tp_windows: set[object] = set()
    fp_rows = 0
    ordered = sorted(pts, key=lambda p: p.score, reverse=True)
    current = 1.1
    window_total = sum(parts.values())
    for p in [*ordered, Point(-1.0, 0.0, PROBATION)]:
        if p.score != current:
            score = window_total + fp_cost
            if score > best[0]:
                best = (score, current, len(tp_windows), fp_rows)
            current = p.score
        if p.window is None:
            fp_cost += p.sweep
            fp_rows += 1
        elif p.window != PROBATION:
            if p.sweep > parts[p.window]:
                window_total += p.sweep - parts[p.window]
                parts[p.window] = p.sweep
            tp_windows.add(p.window)
    raw, threshold, tp, fp = best
    a_tp = weights[0]
    perfect, null = a_tp * n_windows, -a_fn * n_windows
    return ProfileResult(
        threshold=threshold,
        raw=raw,
        normalised=100.0 * (raw - null) / (perfect - null),
        tp=tp,
        fp=fp,
        fn=len(parts) - tp,
    )


def score_at(
    points: Iterable[Point], n_windows: int, weights: tuple[float, float, float], threshold: float
) -> ProfileResult:
    """The corpus score of ``points`` at a given threshold (a row detects when its score is
    at least ``threshold``), normalised as ``sweep`` normalises. ``sweep``'s best raw
    score is ``score_at`` its threshold."""
    a_tp, _, a_fn = weights
    best: dict[object, float] = {}
    detected: set[object] = set()
    fp_cost = 0.0
    fp_rows = 0
    for p in points:
        if p.window == PROBATION:
            continue
        if p.window is not None:
            best.setdefault(p.window, -a_fn)
            if p.score >= threshold:
                detected.add(p.window)
                best[p.window] = max(best[p.window], p.sweep)
        elif p.score >= threshold:
            fp_cost += p.sweep
            fp_rows += 1
    raw = sum(best.values()) + fp_cost
    perfect, null = a_tp * n_windows, -a_fn * n_windows
    normalised = 100.0 * (raw - null) / (perfect - null) if n_windows else math.nan
    return ProfileResult(
        threshold=threshold,
        raw=raw,
        normalised=normalised,
        tp=len(detected),
        fp=fp_rows,
        fn=len(best) - len(detected),
    )


@dataclass(frozen=True, slots=True)
class HeldOut:
    """One category scored at the threshold chosen on all the others."""

    category: str
    windows: int
    held: ProfileResult  # at the threshold chosen without this category
    in_sample: ProfileResult  # at the threshold chosen on every category


@dataclass(frozen=True, slots=True)
class CVResult:
    """Leave-one-category-out figures of one profile."""

    folds: tuple[HeldOut, ...]
    raw: float  # sum of the held-out raw scores
    normalised: float  # that sum, normalised over every window of the corpus
    in_sample: ProfileResult  # one threshold for the whole corpus, chosen on it


def cross_validate(
    points: dict[str, list[Point]], windows: dict[str, int], weights: tuple[float, float, float]
) -> CVResult:
    """Leave-one-category-out cross-validation of one profile's threshold.

    ``points`` holds each category's scored rows (``file_points`` of its files, in any
    order) and ``windows`` its number of labelled windows. For each category, the
    threshold is the one ``sweep`` picks on the rows of the other categories; the held
    category is scored at it (``score_at``), giving a raw score.

    Pooling: NAB's raw score is a sum over files, and its normalised score divides the
    corpus total by the spread between the null detector (-A_FN per window) and the
    perfect one (A_TP per window). So the held-out raw scores are summed, and the pooled
    total normalised with the null and perfect totals of the whole corpus:
    100 (sum_c raw_c + A_FN W) / ((A_TP + A_FN) W), W the windows of every category.
    This is exactly NAB's formula with each file scored at the threshold of its own fold,
    and it reads on the same scale as the in-sample figure beside it (which is the same
    sum with one threshold for every file). Averaging per-category normalised scores
    instead would weigh a 3-window category like a 15-window one and is undefined for a
    category with no window (artificialNoAnomaly, which can only lose points to false
    positives: pooled, its false positives count as they do in NAB).
    """
    a_tp, _, a_fn = weights
    total = sum(windows.values())
    everything = [p for c in sorted(points) for p in points[c]]
    in_sample = sweep(everything, total, weights)
    folds = []
    for held in sorted(points):
        train = [p for c in sorted(points) if c != held for p in points[c]]
        chosen = sweep(train, total - windows[held], weights)
        folds.append(
            HeldOut(
                category=held,
                windows=windows[held],
                held=score_at(points[held], windows[held], weights, chosen.threshold),
                in_sample=score_at(points[held], windows[held], weights, in_sample.threshold),
            )
        )
    raw = sum(f.held.raw for f in folds)
    perfect, null = a_tp * total, -a_fn * total
    return CVResult(
        folds=tuple(folds),
        raw=raw,
        normalised=100.0 * (raw - null) / (perfect - null),
        in_sample=in_sample,
    )


def load_windows(path: Path) -> dict[str, list[list[str]]]:
    data: dict[str, list[list[str]]] = json.loads(path.read_text())
    return data


def fold(windows: dict[str, list[list[str]]], which: str) -> dict[str, list[list[str]]]:
    """Every other file of each category, by name: ``a`` the first, third, ...; ``b`` the
    second, fourth, ... A change that helps only one fold was fitted to files, not rules."""
    if which not in ("a", "b"):
        raise ValueError(f"fold must be 'a' or 'b', got {which!r}")
    seen: dict[str, int] = {}
    out = {}
    for key in sorted(windows):
        category = key.split("/")[0]
        index = seen.get(category, 0)
        seen[category] = index + 1
        if (index % 2 == 0) == (which == "a"):
            out[key] = windows[key]
    return out


def result_file(results: Path, name: str, key: str) -> Path:
    category, filename = key.split("/")
    return results / category / f"{name}_{filename}"


def read_results(
    results: Path, name: str, windows: dict[str, list[list[str]]]
) -> list[tuple[str, list[str], list[float]]]:
    """(file key, timestamps, scores) of detector ``name`` for every file of ``windows``."""
    files = []
    for key in sorted(windows):
        path = result_file(results, name, key)
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        files.append(
            (key, [r["timestamp"].strip() for r in rows], [float(r["anomaly_score"]) for r in rows])
        )
    return files


def cv_results(
    results: Path, name: str, windows: dict[str, list[list[str]]]
) -> dict[str, CVResult]:
    """``cross_validate`` every profile on the result files of detector ``name``."""
    files = read_results(results, name, windows)
    counts: dict[str, int] = {}
    for key in windows:
        counts[key.split("/")[0]] = counts.get(key.split("/")[0], 0) + len(windows[key])
    out = {}
    for profile, weights in PROFILES.items():
        points: dict[str, list[Point]] = {c: [] for c in counts}
        for key, stamps, scores in files:
            points[key.split("/")[0]].extend(
                file_points(key, stamps, scores, windows[key], weights)
            )
        out[profile] = cross_validate(points, counts, weights)
    return out


def score_results(
    results: Path, name: str, windows: dict[str, list[list[str]]]
) -> dict[str, ProfileResult]:
    """Score the result files of detector ``name`` for every file listed in ``windows``."""
    out = {}
    files = read_results(results, name, windows)
    n_windows = sum(len(w) for w in windows.values())
    for profile, weights in PROFILES.items():
        points: list[Point] = []
        for key, stamps, scores in files:
            points.extend(file_points(key, stamps, scores, windows[key], weights))
        out[profile] = sweep(points, n_windows, weights)
    return out


# ------------------------------------------------------------------------------- running

OUTPUTS = ("alerts", "raw")


def run(detector: str, data: Path, out: Path, *, output: str = "alerts") -> dict[str, float]:
    """Stream every CSV under ``data`` through a fresh detector; write NAB result files
    holding alert starts (``alerts``) or every sample's score (``raw``)."""
    from bench.nabdetect import build_detector

    t0 = time.perf_counter()
    rows = 0
    for path in sorted(data.glob("*/*.csv")):
        stamps, values = read_series(path)
        det = build_detector(detector)
        scores = det.score_stream(stamps, values, output=output)
        target = out / detector / path.parent.name / f"{detector}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for stamp, value, score in zip(stamps, values, scores, strict=True):
                w.writerow([stamp, repr(value), repr(float(score))])
        rows += len(values)
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def _print_cv(name: str, results: dict[str, CVResult]) -> dict[str, object]:
    """The CV table (one block per profile); the figures as a JSON-ready dict."""
    figures: dict[str, object] = {"detector": name}
    for profile, res in results.items():
        ins = res.in_sample
        print(
            f"{profile}: in-sample {ins.normalised:.2f} (threshold {ins.threshold:.6g}), "
            f"leave-one-category-out {res.normalised:.2f}"
        )
        print(
            f"  {'held-out category':<22} {'windows':>7} {'threshold':>10} "
            f"{'raw':>8} {'tp':>3} {'fn':>3} {'fp':>4}   {'raw in-sample':>13}"
        )
        for f in res.folds:
            h = f.held
            print(
                f"  {f.category:<22} {f.windows:>7} {h.threshold:>10.6f} {h.raw:>8.3f} "
                f"{h.tp:>3} {h.fn:>3} {h.fp:>4}   {f.in_sample.raw:>13.3f}"
            )
        figures[profile] = {
            "in_sample": round(ins.normalised, 4),
            "cv": round(res.normalised, 4),
            "in_sample_threshold": ins.threshold,
            "in_sample_raw": ins.raw,
            "cv_raw": res.raw,
            "folds": {
                f.category: {
                    "windows": f.windows,
                    "threshold": f.held.threshold,
                    "raw": f.held.raw,
                    "tp": f.held.tp,
                    "fn": f.held.fn,
                    "fp_rows": f.held.fp,
                    "raw_in_sample": f.in_sample.raw,
                }
                for f in res.folds
            },
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--detector", default="default")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument(
        "--output",
        choices=OUTPUTS,
        default="alerts",
        help="alerts: the score of each alert's first firing sample, 0 elsewhere "
        "(the default rule's lifecycle); raw: every sample's score",
    )
    s = sub.add_parser("score")
    s.add_argument("--results", type=Path, required=True, help="OUT/NAME from `run`")
    s.add_argument(
        "--fold",
        choices=("a", "b"),
        help="score only every other file of each category (a two-fold check)",
    )
    c = sub.add_parser("cv", help="leave-one-category-out cross-validation of the thresholds")
    c.add_argument(
        "--detector", default="default", help="run this detector first (ignored with --results)"
    )
    c.add_argument("--results", type=Path, help="OUT/NAME from `run` (default: run now)")
    c.add_argument(
        "--output",
        choices=OUTPUTS,
        default="alerts",
        help="what the detector run writes (ignored with --results)",
    )
    for sp in (s, c):
        sp.add_argument("--name", help="file prefix (default: the results folder's name)")
        sp.add_argument(
            "--windows", type=Path, help="labelled windows (default: DATA/../windows_dev.json)"
        )
        sp.add_argument("--data", type=Path, help="the data folder (to find windows_dev.json)")
    args = parser.parse_args(argv)
    if args.command == "run":
        ran = run(args.detector, args.data, args.out, output=args.output)
        print(json.dumps(ran))
        return 0
    windows_path = args.windows or (args.data.parent / "windows_dev.json" if args.data else None)
    if windows_path is None:
        parser.error(f"{args.command} needs --windows or --data")
    windows = load_windows(windows_path)
    if args.command == "cv":
        return _cv(args, parser, windows)
    name = args.name or args.results.name
    if args.fold:
        windows = fold(windows, args.fold)
    results = score_results(args.results, name, windows)
    figures: dict[str, object] = {"detector": name, "fold": args.fold, "files": len(windows)}
    for profile, res in results.items():
        print(
            f"{profile:<20} {res.normalised:7.2f}  threshold {res.threshold:.6g}  "
            f"windows detected {res.tp}, missed {res.fn}, FP rows {res.fp}"
        )
        figures[profile] = {
            "score": round(res.normalised, 4),
            "threshold": res.threshold,
            "raw": res.raw,
            "tp": res.tp,
            "fn": res.fn,
            "fp_rows": res.fp,
        }
    print(json.dumps(figures))
    return 0


def _cv(
    args: argparse.Namespace, parser: argparse.ArgumentParser, windows: dict[str, list[list[str]]]
) -> int:
    if args.results is not None:
        name = args.name or args.results.name
        results = cv_results(args.results, name, windows)
        extra: dict[str, object] = {}
    else:
        if args.data is None:
            parser.error("cv without --results needs --data to run the detector on")
        with tempfile.TemporaryDirectory(prefix="nab-cv-") as tmp:
            extra = {
                "run": run(args.detector, args.data, Path(tmp), output=args.output),
                "output": args.output,
            }
            name = args.detector
            results = cv_results(Path(tmp) / name, name, windows)
    figures = {**_print_cv(name, results), "files": len(windows), **extra}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
