"""servicekit: the service plumbing both programs share, vigil-detector and vigil-remediator.

``bearer``     parses an ``Authorization: Bearer`` header and compares it in constant time
``exposure``   decides whether a service may start listening with endpoints unguarded
               (or with a token no client could present)
``mediatype``  checks that a JSON request body says it is JSON

It must stay a leaf: it imports neither ``detector`` nor ``remediator`` (an import-linter
contract in pyproject.toml), holds no state and does no I/O. Each service maps its
verdicts to its own responses, errors and log lines.
"""
