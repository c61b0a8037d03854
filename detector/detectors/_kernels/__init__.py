"""numba kernels of the detector families; they import numpy and numba only."""

SAFE_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
