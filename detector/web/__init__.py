"""The detector's HTTP surface beyond remote-write: the series API (``api``), the console
handlers (``console``) with their static files (``assets/``), and the served ``runbooks/``."""
