"""The playbooks, from YAML to validated, ready-to-render values.

``playbook`` is the schema; ``loader`` reads ``playbooks/`` into a ``Catalog`` (actions
resolved, params validated at load); ``matchers`` are the alert-label matchers playbooks
and silences use; ``templating`` renders step params and queries for an alert, escaping
each value for its context through ``promql``, ``urls`` and ``placeholders``. Pure: no
I/O beyond reading the playbook files, no runs, no cluster.
"""
