"""deploy/cluster/: the monitoring stack and Vigil in a Kubernetes cluster (see README.md)."""
