"""Vigil detector: Prometheus remote-write in, per-series online anomaly detection.

The package owns ingestion (``remote_write``), the series registry (``series``), the
detector families (``detectors``) and the pipeline that routes decoded batches to
them. It never imports ``remediator``.
"""

__version__ = "0.1.0"
