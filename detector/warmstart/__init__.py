"""Warm start: a new series' history read from Prometheus (``prometheus``) and its seasonal
period judged from it (``periods``)."""
