"""The remediator's exception tree; nothing else here.

::

    RemediatorError
    ├── ConfigError              bad configuration file or flag (file:line: path: message)
    ├── PlaybookError            playbooks that do not validate (every problem, file:line)
    ├── WebhookError             an Alertmanager notification that cannot be accepted (HTTP 400)
    ├── IdentityError            the trusted proxy's headers cannot say who it is (HTTP 400)
    ├── TemplateError            a step parameter template that cannot be rendered for an alert
    ├── AuditError               the audit database cannot be written (HTTP 503: retry)
    │   └── ApprovalError        an approval that cannot be given (HTTP 409: look again)
    │       └── ApproverError    the person is not one of the playbook's approvers (HTTP 403)
    └── ActionError              an action that did not do what it was asked
        ├── ActionTemporaryError a fault worth retrying after ``delay_s`` (timeouts, 429, 5xx)
        └── ActionPermanentError anything else: never retried
"""

from __future__ import annotations


class RemediatorError(Exception):
    """Root of every error the remediator raises on purpose."""


class ConfigError(RemediatorError):
    """The configuration is invalid; the message lists every problem with its place."""


class PlaybookError(RemediatorError):
    """One or more playbooks are invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class WebhookError(RemediatorError):
    """A webhook body is not an Alertmanager version 4 notification."""


class IdentityError(RemediatorError):
    """A request with the admin token whose trusted user or groups header comes more than
    once, or names a reserved name: who it is from cannot be told."""


class TemplateError(RemediatorError):
    """A parameter template names something the alert does not have, or renders to a
    value its parameter does not accept."""


class AuditError(RemediatorError):
    """The audit database could not record something; the caller must not go on."""


class ApprovalError(AuditError):
    """The run is not waiting, its plan changed, or the approval expired."""


class ApproverError(ApprovalError):
    """The identity deciding is not one of the playbook's ``approvers``."""


class ActionError(RemediatorError):
    """An action failed."""


class ActionTemporaryError(ActionError):
    """A transient fault: retry after ``delay_s`` (bounded by the runner)."""

    def __init__(self, message: str, *, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class ActionPermanentError(ActionError):
    """The action cannot succeed as asked; it is not retried."""
