"""Alerts, from a score to Alertmanager: per-series state (``state``, with its numba kernel
``_state_kernel``), the book of active alerts (``book``), plain words (``wording``),
delivery (``delivery``) and the enrichers (``enrichers`` over ``rollouts`` and ``loki``)."""
