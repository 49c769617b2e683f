"""Check rendered workloads against the Kubernetes Pod Security Standards, ``restricted`` profile.

The rules are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(baseline and restricted, policy version 1.30+), applied to the pod templates
mlsteps renders: Deployments, Jobs, Pods, KServe predictors and the pod specs
handed to orchestrators (Airflow's KubernetesPodOperator, Prefect's and
Dagster's Jobs). Without a cluster to enforce ``pod-security.kubernetes.io/enforce:
restricted``, this is how the tests hold every rendered pod to it.

Pure functions over plain dicts: no Kubernetes client needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Volume types the restricted profile allows.
ALLOWED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
#: Sysctls the baseline profile allows.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every pod spec in a rendered object, with where it was found."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield "spec", spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield "spec.jobTemplate.spec.template.spec", (job.get("template") or {}).get("spec") or {}
    elif kind == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            part = spec.get(component)
            if part:
                yield f"spec.{component}", _kserve_pod(part)


def _kserve_pod(component: Mapping[str, Any]) -> dict[str, Any]:
    """A KServe component as a pod spec: its model/framework container joins ``containers``."""
    pod = dict(component)
    containers = list(pod.get("containers") or [])
    for key in ("model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml", "lightgbm"):
        if isinstance(pod.get(key), Mapping):
            containers.append({"name": key, **pod[key]})
    pod["containers"] = containers
    return pod


def check_pod_spec(pod: Mapping[str, Any], where: str = "spec") -> list[str]:
    """Every violation of the restricted profile in one pod spec (empty: compliant)."""
    problems: list[str] = []
    psc: Mapping[str, Any] = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{where}.{field} must be unset or false")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"{where}.volumes[{volume.get('name')}]: type {sorted(kinds)} is not allowed")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"{where}.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    problems += _context_problems(psc, f"{where}.securityContext", pod_level=True)

    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    containers = [(lst, c) for lst in _CONTAINER_LISTS for c in pod.get(lst) or []]
    if not containers:
        problems.append(f"{where}: no containers")
    for lst, c in containers:
        at = f"{where}.{lst}[{c.get('name')}]"
        sc: Mapping[str, Any] = c.get("securityContext") or {}
        problems += _context_problems(sc, f"{at}.securityContext", pod_level=False)
        if sc.get("privileged"):
            problems.append(f"{at}.securityContext.privileged must be unset or false")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}.securityContext.allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", True if pod_non_root else None)
        if non_root is not True:
            problems.append(f"{at}: runAsNonRoot must be true (on the container or the pod)")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and not pod_seccomp:
            problems.append(
                f"{at}: seccompProfile.type must be RuntimeDefault or Localhost (container or pod)"
            )
        caps: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{at}.securityContext.capabilities.drop must include ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            problems.append(
                f"{at}.securityContext.capabilities.add may only hold NET_BIND_SERVICE, not {sorted(extra)}"
            )
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{at}.ports: hostPort must be unset or 0")
    return problems


def _context_problems(sc: Mapping[str, Any], at: str, *, pod_level: bool) -> list[str]:
    """Rules shared by pod- and container-level security contexts."""
    problems: list[str] = []
    if sc.get("runAsNonRoot") is False:
        problems.append(f"{at}.runAsNonRoot must not be false")
    if sc.get("runAsUser") == 0:
        problems.append(f"{at}.runAsUser must not be 0 (root)")
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{at}.seccompProfile.type must be RuntimeDefault or Localhost, not {seccomp}")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{at}.appArmorProfile.type must be RuntimeDefault or Localhost, not {apparmor}")
    selinux: Mapping[str, Any] = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"{at}.seLinuxOptions: only the container_* types, and no user or role")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{at}.windowsOptions.hostProcess must be unset or false")
    if not pod_level and sc.get("procMount") not in (None, "Default"):
        problems.append(f"{at}.procMount must be Default")
    return problems


def check_restricted(objects: list[Mapping[str, Any]]) -> list[str]:
    """Violations of the restricted profile in every pod template of ``objects``."""
    problems: list[str] = []
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        for where, pod in pod_specs(obj):
            problems += [f"{name}: {p}" for p in check_pod_spec(pod, where)]
    return problems
