"""Vigil remediator: Alertmanager webhook -> YAML playbooks -> guarded Kubernetes actions.

Not built yet (issue 5). The package exists so the distribution layout is final; it must
never import ``detector``.
"""
