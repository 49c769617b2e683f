"""A locked-down base job template for ``prefect-kubernetes`` work pools running mlsteps flows.

:func:`base_job_template` starts from the Kubernetes worker's own default template
(``KubernetesWorker.get_default_base_job_template()``) and hardens the Job's pod:
non-root user, read-only root filesystem with an ``emptyDir`` at ``/tmp`` (``HOME``
and ``PREFECT_HOME`` point there), no privilege escalation, every capability
dropped, the ``RuntimeDefault`` seccomp profile, no service-account token unless
asked for, and CPU/memory requests and limits by default. Deployments set the
usual job variables (``image``, ``namespace``, ``env``, ``cpu_request``...) plus
``env_from`` (Kubernetes ``envFrom`` sources, e.g. a Secret holding
``MLFLOW_TRACKING_TOKEN``), ``volumes``/``volume_mounts`` (a data volume next to
``/tmp``), ``run_as_user`` and ``automount_service_account_token``.

Write it to a file for the CLI with ``python -m mlsteps_prefect.kubernetes > template.json``,
then ``prefect work-pool create mlsteps-k8s --type kubernetes --base-job-template template.json``;
or call :func:`create_work_pool`. ``prefect-kubernetes`` is imported only inside the
functions (install ``mlsteps-prefect[kubernetes]``).
"""

from __future__ import annotations

import copy
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import WorkPool

#: Where the writable scratch volume is mounted; the root filesystem is read-only.
#: (an emptyDir private to the pod, not the node's /tmp)
TMP_DIR = "/tmp"
TMP_VOLUME = "tmp"

#: Defaults for the worker's resource variables, so every Job has requests and limits.
DEFAULT_RESOURCES: dict[str, str] = {
    "cpu_request": "500m",
    "memory_request": "1Gi",
    "cpu_limit": "2",
    "memory_limit": "4Gi",
}

#: Environment every flow-run pod gets (a deployment's ``env`` is merged over it).
DEFAULT_ENV: dict[str, str] = {
    "HOME": TMP_DIR,
    "TMPDIR": TMP_DIR,
    "PREFECT_HOME": f"{TMP_DIR}/.prefect",
}

#: Variables this template adds to the Kubernetes worker's own (JSON schema properties).
EXTRA_VARIABLES: dict[str, dict[str, Any]] = {
    "env_from": {
        "title": "Environment from Secrets/ConfigMaps",
        "description": "Kubernetes envFrom sources for the flow container, e.g. "
        '[{"secretRef": {"name": "mlflow-credentials"}}]: every key becomes an environment variable.',
        "type": "array",
        "items": {"type": "object"},
        "default": [],
    },
    "run_as_user": {
        "title": "Run as user",
        "description": "Non-root UID (and GID, fsGroup) the flow container runs as; high by default, "
        "so it maps to no user of the node.",
        "type": "integer",
        "minimum": 1,
        "default": 10001,
    },
    "volumes": {
        "title": "Volumes",
        "description": "Pod volumes. The default is the writable emptyDir for /tmp; a deployment that adds "
        "one (e.g. a PersistentVolumeClaim for data) lists the tmp volume too.",
        "type": "array",
        "items": {"type": "object"},
        "default": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}}],
    },
    "volume_mounts": {
        "title": "Volume mounts",
        "description": "Volume mounts of the flow container; the default mounts the tmp volume at /tmp.",
        "type": "array",
        "items": {"type": "object"},
        "default": [{"name": TMP_VOLUME, "mountPath": TMP_DIR}],
    },
    "automount_service_account_token": {
        "title": "Mount the service account token",
        "description": "Mount the Kubernetes API token into the pod (only steps that call the "
        "Kubernetes API, such as a `deploy` step with a kubernetes target, need it).",
        "type": "boolean",
        "default": False,
    },
}


def base_job_template(
    *,
    resources: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The hardened base job template for a ``kubernetes`` work pool (a JSON-compatible dict).

    Args:
        resources: Defaults for ``cpu_request``, ``memory_request``, ``cpu_limit`` and
            ``memory_limit`` (default :data:`DEFAULT_RESOURCES`); deployments override them.
        env: Extra default environment variables, merged over :data:`DEFAULT_ENV`.

    Returns:
        ``{"job_configuration": ..., "variables": ...}`` as ``prefect work-pool create
        --base-job-template`` takes it.
    """
    from prefect_kubernetes.worker import KubernetesWorker  # type: ignore[import-untyped]

    template: dict[str, Any] = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    properties: dict[str, Any] = template["variables"]["properties"]
    for name, value in {**DEFAULT_RESOURCES, **(resources or {})}.items():
        properties[name]["default"] = value
    properties["env"]["default"] = {**DEFAULT_ENV, **(env or {})}
    # A tag can be moved to another image; pulling each time runs what the deployment names.
    properties["image_pull_policy"]["default"] = "Always"
    properties.update(copy.deepcopy(EXTRA_VARIABLES))

    job = template["job_configuration"]["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    pod["automountServiceAccountToken"] = "{{ automount_service_account_token }}"
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": "{{ run_as_user }}",
        "runAsGroup": "{{ run_as_user }}",
        "fsGroup": "{{ run_as_user }}",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["volumes"] = "{{ volumes }}"
    (container,) = pod["containers"]
    container["envFrom"] = "{{ env_from }}"
    container["volumeMounts"] = "{{ volume_mounts }}"
    container["securityContext"] = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return template


async def create_work_pool(
    name: str,
    *,
    client: PrefectClient | None = None,
    overwrite: bool = False,
    **template_options: Any,
) -> WorkPool:
    """Create (or with ``overwrite``, update) a ``kubernetes`` work pool with :func:`base_job_template`.

    The same as ``prefect work-pool create NAME --type kubernetes --base-job-template ...``.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    template = base_job_template(**template_options)
    if client is None:
        async with get_client() as own:
            return await create_work_pool(name, client=own, overwrite=overwrite, **template_options)
    try:
        return await client.create_work_pool(
            WorkPoolCreate(name=name, type="kubernetes", base_job_template=template)
        )
    except ObjectAlreadyExists:
        if not overwrite:
            raise
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return await client.read_work_pool(name)


def main() -> None:
    """Print :func:`base_job_template` as JSON (``python -m mlsteps_prefect.kubernetes``)."""
    json.dump(base_job_template(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
