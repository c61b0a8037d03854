"""Runs: from an Alertmanager notification to a remediation's end, one part per module.

``intake`` creates each run once (dedup) → ``decision`` judges it (``guards`` are the
pure verdicts, ``facts`` what they judge) → ``approval`` lets a person release it →
``execution`` carries out its ``plan`` (attempts, retries, undo) → ``verification``
checks it worked → ``escalation`` tells people when it did not; ``breakers`` stop a
playbook that keeps failing. ``journal`` records every step in the audit log;
``replicas`` shares runs between replicas and hands them to a new leader; ``recovery``
deals with runs a crash interrupted. ``runner.Runner`` composes them for the app.
Imports the building blocks (actions, catalog, audit, cluster), never the web layer.
"""
