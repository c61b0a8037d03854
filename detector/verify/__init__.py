"""Deployment verification: the pure verdict (``verdict``) and its Prometheus reads
(``prometheus``)."""
