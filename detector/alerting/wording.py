"""Plain words for alerts: values with their units, durations, times and series selectors.

Pure functions of their arguments; no clock, no I/O. The unit of a value comes from the
Prometheus naming conventions of its metric (``_seconds``, ``_bytes``, ``_ratio``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

IDENTITY_LABELS = (
    "namespace",
    "service",
    "deployment",
    "pod",
    "container",
    "node",
    "instance",
    "job",
)


def _sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, without exponent for everyday sizes."""
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        exponent = int(exp)
        if -4 <= exponent < 15:
            text = f"{x:.{max(0, digits - 1 - exponent)}f}"
        else:
            text = f"{mantissa}e{exponent}"
    return text


def _scaled(x: float, steps: Iterable[tuple[float, str]], digits: int = 3) -> str:
    for factor, unit in steps:
        if abs(x) >= factor and factor > 0:
            return f"{_sig(x / factor, digits)} {unit}".rstrip()
        if factor == 0:
            return f"{_sig(x, digits)} {unit}".rstrip()
    return _sig(x, digits)


_BYTES = ((1024.0**4, "TiB"), (1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB"), (0.0, "B"))
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (0.0, ""))


def base_unit(metric: str) -> str:
    """The unit a metric name announces: seconds, bytes, ratio, percent, celsius or ''."""
    name = metric.removesuffix("_total")
    for unit in ("seconds", "bytes", "ratio", "percent", "celsius"):
        if name.endswith("_" + unit):
            return unit
    return ""


def format_value(x: float, *, metric: str = "", rate: bool = False) -> str:
    """``x`` for a person: ``2.3 s``, ``210 ms``, ``1.5 GiB``, ``12 %``, ``3.4k/s``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    unit = base_unit(metric)
    if unit == "seconds" and rate:
        return f"{_sig(x)} s/s"  # seconds per second: e.g. CPU cores busy
    if unit == "seconds":
        ax = abs(x)
        if ax == 0:
            text = "0 s"
        elif ax < 1e-3:
            text = f"{_sig(x * 1e6)} µs"
        elif ax < 1:
            text = f"{_sig(x * 1e3)} ms"
        elif ax < 120:
            text = f"{_sig(x)} s"
        elif ax < 7200:
            text = f"{_sig(x / 60)} min"
        else:
            text = f"{_sig(x / 3600)} h"
    elif unit == "bytes":
        text = _scaled(x, _BYTES)
    elif unit == "ratio":
        text = f"{_sig(x * 100)} %"
    elif unit == "percent":
        text = f"{_sig(x)} %"
    elif unit == "celsius":
        text = f"{_sig(x)} °C"
    else:
        text = _scaled(x, _SI).replace(" ", "")
    return text + "/s" if rate else text


def score(x: float) -> str:
    """An anomaly score with enough decimals to tell 0.9999 from 0.9999995 (never "1")."""
    if not math.isfinite(x):
        return "NaN"
    if x >= 1.0:
        return "1"
    decimals = min(15, max(6, math.floor(-math.log10(1.0 - x) + 1e-9) + 2))
    text = f"{x:.{decimals}f}"
    while text.startswith("1") and decimals < 15:  # rounding must not make it "1.0000"
        decimals += 1
        text = f"{x:.{decimals}f}"
    while len(text) > 8 and text.endswith("0"):  # keep at least six decimals
        text = text[:-1]
    return text


def format_duration(ms: float) -> str:
    """``45 s``, ``6 min``, ``2 h 5 min``, ``3 d 4 h``."""
    s = max(0.0, ms / 1000.0)
    if s < 120:
        return f"{round(s)} s"
    minutes = int(s // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def setting_duration(s: float) -> str:
    """A configured duration in its largest whole unit: ``1 h``, ``90 min``, ``45 s``."""
    for unit, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= unit and s % unit == 0:
            return f"{s // unit:.0f} {name}"
    return f"{s:g} s"


def iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as Alertmanager takes it."""
    return (
        datetime.fromtimestamp(ms / 1000.0, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def time_of_week(ms: int, *, weekly: bool) -> str:
    """``for a Tuesday 14:00 UTC`` (weekly profile) or ``for 14:00 UTC`` (daily)."""
    t = datetime.fromtimestamp(ms / 1000.0, UTC)
    clock = t.strftime("%H:%M")
    return f"for a {t.strftime('%A')} {clock} UTC" if weekly else f"for {clock} UTC"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def matchers(labels: Iterable[tuple[str, str]]) -> str:
    """``{a="x",b="y"}`` for every label but the metric name."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels if k != "__name__")
    return "{" + inner + "}"


def selector(labels: Iterable[tuple[str, str]]) -> str:
    """The PromQL selector of exactly this series: ``name{a="x"}``."""
    pairs = list(labels)
    name = dict(pairs).get("__name__", "")
    return name + matchers(pairs)


def what(labels: Iterable[tuple[str, str]], *, rate: bool) -> str:
    """The series in words: ``rate of http_requests_total (namespace=shop, service=api)``."""
    as_dict = dict(labels)
    name = as_dict.get("__name__", "series")
    ident = [f"{k}={as_dict[k]}" for k in IDENTITY_LABELS if as_dict.get(k)][:3]
    text = f"rate of {name}" if rate else name
    return f"{text} ({', '.join(ident)})" if ident else text
