"""Vigil detector: Prometheus remote-write in, per-series online anomaly detection.

The package owns ingestion (``remote_write``), the series registry (``series``), the
pipeline that routes decoded batches (``pipeline``) to the detector families
(``detectors``), the alerts (``alerting``), deployment verification (``verify``), warm
start (``warmstart``) and the HTTP surface (``web``); docs/architecture.md has the module
map. It never imports ``remediator``.
"""

__version__ = "0.1.0"
