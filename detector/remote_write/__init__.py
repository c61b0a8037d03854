"""Remote-write ingestion: wire decoding (``_wire``, ``decode``), encoding for tests and
write-back (``encode``), and the HTTP handler (``handler``)."""
