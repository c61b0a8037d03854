"""Detector families: one module per family, each a state table over many series."""
