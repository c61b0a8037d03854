"""The defaults the real server fills in on every write (pkg/apis/*/v1/defaults.go), for the
fields a client reading back an object is likely to look at; plus the few admission-plugin
additions every real Pod gets (service account name, priority, default tolerations).

Not reproduced: the ServiceAccount token volume, LimitRanger, and defaults of rarely used
fields. All functions are idempotent: they only fill what is missing.
"""

from __future__ import annotations

from typing import Any

_PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
_DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def _d(obj: dict[str, Any], key: str) -> dict[str, Any]:
    v = obj.get(key)
    if not isinstance(v, dict):
        v = obj[key] = {}
    return v


def _pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(c: dict[str, Any]) -> None:
    if not isinstance(c, dict):
        return
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        c.setdefault("imagePullPolicy", _pull_policy(c["image"]))
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            for k, v in _PROBE_DEFAULTS.items():
                p.setdefault(k, v)
            if isinstance(p.get("httpGet"), dict):
                p["httpGet"].setdefault("scheme", "HTTP")


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            _container(c)
    for vol in spec.get("volumes") or []:
        for src in ("configMap", "secret"):
            if isinstance(vol, dict) and isinstance(vol.get(src), dict):
                vol[src].setdefault("defaultMode", 420)


def _template(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        tmpl = spec["template"]
        _d(tmpl, "metadata")
        pod_spec(_d(tmpl, "spec"))


def _pod(obj: dict[str, Any]) -> None:
    spec = _d(obj, "spec")
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    # admission plugins: ServiceAccount, Priority, DefaultTolerationSeconds
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    if isinstance(tolerations, list):
        keys = {t.get("key") for t in tolerations if isinstance(t, dict)}
        tolerations += [dict(t) for t in _DEFAULT_TOLERATIONS if t["key"] not in keys]


def _deployment(obj: dict[str, Any]) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _d(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _d(strategy, "rollingUpdate")
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)


def _statefulset(obj: dict[str, Any]) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = _d(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _d(strategy, "rollingUpdate").setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    retention = _d(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    _template(obj)


def _daemonset(obj: dict[str, Any]) -> None:
    spec = _d(obj, "spec")
    strategy = _d(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _d(strategy, "rollingUpdate")
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(obj)


def _replicaset(obj: dict[str, Any]) -> None:
    _d(obj, "spec").setdefault("replicas", 1)
    _template(obj)


def _job(obj: dict[str, Any]) -> None:
    spec = _d(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template(obj)


def job_selector(obj: dict[str, Any], uid: str) -> None:
    """What the Job registry adds on create unless ``spec.manualSelector`` is true."""
    spec = _d(obj, "spec")
    if spec.get("manualSelector"):
        return
    name = (obj.get("metadata") or {}).get("name", "")
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = _d(_d(_d(spec, "template"), "metadata"), "labels")
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )


def _namespace(obj: dict[str, Any]) -> None:
    meta = _d(obj, "metadata")
    _d(meta, "labels").setdefault("kubernetes.io/metadata.name", meta.get("name", ""))
    _d(obj, "spec").setdefault("finalizers", ["kubernetes"])
    _d(obj, "status").setdefault("phase", "Active")


def _hpa(obj: dict[str, Any]) -> None:
    _d(obj, "spec").setdefault("minReplicas", 1)


_BY_KIND = {
    "Pod": _pod,
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "ReplicaSet": _replicaset,
    "Job": _job,
    "Namespace": _namespace,
    "HorizontalPodAutoscaler": _hpa,
}


def apply_defaults(obj: dict[str, Any]) -> None:
    fn = _BY_KIND.get(str(obj.get("kind")))
    if fn is not None:
        fn(obj)
