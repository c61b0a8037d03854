"""deploy/local/: the stack as local processes on 127.0.0.1, and ``make demo``."""
