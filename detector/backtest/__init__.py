"""``vigil-detector backtest``: what a config would have paged on over a stretch of history.

Modules, pure core first:

- ``span``: the time grid (``--range``, ``--end``, ``--step``, the warm-up lead-in) and the
  chunks it is read in, each within Prometheus's points-per-query limit and a sample
  budget, so memory stays bounded over any range.
- ``replay``: one config's service path without HTTP (series registry, rules, detector
  families, alert lifecycle, staleness sweeps), fed chunk by chunk in sample time.
- ``tally``: alert events -> pages (rule, series, start, end, peak, why, how they
  resolved), pages per day per rule, the series that page most, two configs compared.
- ``escaping``: label text made safe for the terminal (printable) and for SVG (XML).
- ``render``: the terminal table (control characters escaped) and the JSON document.
- ``chart``: one SVG per top series, written by hand (XML-escaped labels).
- ``source``: the only I/O with Prometheus (range queries, their parsing, the selector
  check); ``progress``: the stderr progress bar; ``cli``: argv -> run -> exit code.
"""
