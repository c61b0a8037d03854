"""From a request to scored samples: ``ingest`` (body -> Batch, with the ``_route`` kernel),
``worker`` (the queue and the per-series tables, with the ``_sample_rules`` kernel),
``presence`` (stuck and absent series), ``history`` (console charts) and ``entities``
(multivariate scoring per entity)."""
