"""The detector's exception tree; nothing else here.

::

    DetectorError
    ├── ConfigError          bad configuration file or flag (file:line: path: message)
    ├── SelectorError        a PromQL-style series selector that does not parse
    ├── EnrichmentError      alert context (rollouts, logs) that could not be fetched
    ├── UpstreamError        a peer (Prometheus) answered with a body we cannot use (HTTP 502)
    └── DecodeError          a remote-write body that cannot be accepted (HTTP 400)
        ├── TooLargeError    body or announced decompressed size over a limit (HTTP 413)
        └── UnsupportedError content type, encoding or proto we do not speak (HTTP 415)
"""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error the detector raises on purpose."""


class ConfigError(DetectorError):
    """The configuration is invalid; the message lists every problem with its place."""


class SelectorError(DetectorError):
    """A series selector such as ``{job="api"}`` could not be parsed."""


class DecodeError(DetectorError):
    """A remote-write request is malformed; the sender must not retry it."""


class TooLargeError(DecodeError):
    """The request is over a configured size limit."""


class UnsupportedError(DecodeError):
    """The request uses a content type, encoding or protobuf message we do not accept."""


class EnrichmentError(DetectorError):
    """Context for an alert (rollouts, logs) could not be fetched; the alert goes out without it."""


class UpstreamError(DetectorError):
    """A peer answered, but not with what its API promises (a proxy's page, a truncated or
    reshaped body); the message says which peer, which request and what was wrong."""
