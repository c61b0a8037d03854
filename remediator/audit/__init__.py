"""The audit record: every notification, run, verdict, step and verification, kept.

``store`` is the SQLite database (``AuditLog``, the run and event records, ``RunState``
and ``EventKind``); ``thread`` is the one thread that touches it; ``chain`` hash-chains
the events so tampering shows; ``retention`` says how long rows and bodies stay. It
imports the catalog (a run's ``Mode``) and the webhook's alert model, never the runs
that write into it.
"""
