"""Vigil remediator: Alertmanager webhook -> YAML playbooks -> guarded, verified, undoable
actions with a durable audit trail. It must never import ``detector``; the two share only
the Alertmanager alert JSON (tests/contract)."""
