"""deploy/: the monitoring stack Vigil depends on, in a cluster and on one machine."""
