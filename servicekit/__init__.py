"""servicekit: the service plumbing both programs share, vigil-detector and vigil-remediator.

``bearer``     parses an ``Authorization: Bearer`` header and compares it in constant time
``exposure``   decides whether a service may start listening with endpoints unguarded
               (or with a token no client could present)
``console``    serves each console's page and assets, and the assets both share
                (``console/``: console.css, dom.js, favicon.svg)
``mediatype``  checks that a JSON request body says it is JSON, and reads it as UTF-8
``telemetry``  traces (OTEL_* settings, W3C traceparent) and JSON log lines
``tls``        the listener's and outgoing connections' TLS settings and contexts
``durations``  parses durations as Prometheus writes them (``1h30m``), for configs and flags
``version``    the version both programs print
``cli``        ``--version``, help layout and the startup line both programs share
``probes``     ``/healthz`` + ``/-/healthy`` and ``/readyz`` + ``/-/ready``, one route table
``yamlsrc``    loads YAML into a pydantic model, each error as ``file:line: path: message``

It must stay a leaf: it imports neither ``detector`` nor ``remediator`` (an import-linter
contract in pyproject.toml) and holds no state; its only I/O is reading the files and
log stream a service names to it. Each service maps its verdicts to its own responses,
errors and log lines.
"""
