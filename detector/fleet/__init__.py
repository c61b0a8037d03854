"""``vigil-detector serve --workers N``: one service made of N worker processes.

What lives here: which worker owns a series (``partition``, the cluster's hashmod), how
many cores the process may use (``cores``), the state-directory layout per worker
(``layout``), the Unix-socket link between workers (``peer``), what a worker adds to the
single-process app (``worker``: forwarding, fan-out of the read APIs and /metrics), and
the supervisor that starts, restarts and stops the workers (``supervisor``). With one
worker none of it runs: ``serve`` is the single process it always was.
"""
