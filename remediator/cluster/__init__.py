"""Kubernetes: the API client and what is built on it.

``kube`` is the only importer of kubernetes_asyncio (its errors are wrapped there);
``targets`` resolves an alert's labels to the object a run acts on; ``leases`` holds the
leader election and per-target locks; ``state`` is the ConfigMap replicas share (claimed
runs, flags). Nothing here knows about runs, guards or the audit log.
"""
