"""numba kernels of the detector families; they import numpy and numba only."""

from detector.detectors._kernels import _cache

# before any kernel below is compiled or read from its cache
_cache.install()

SAFE_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# The largest magnitude a family scores or learns. Beyond it a value is treated as a
# non-finite one (scored NaN, state unchanged): squares of deviations between values up
# to 1e150 stay finite in float64, so no sample can turn a series' level or variance into
# inf or NaN for good (a sender of +-1.7e308 or of 1e307 noise did).
MAX_SCORED = 1e150
