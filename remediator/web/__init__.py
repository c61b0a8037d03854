"""The remediator's HTTP handlers: the webhook, the runs and approvals, the operator
endpoints; ``remediator.console`` serves the page and its JSON."""
