"""``MlstepsPipelineComponent``: declare an mlsteps pipeline in a ``dg`` project's ``defs.yaml``.

```yaml
# defs/penguins/defs.yaml
type: mlsteps_dagster.MlstepsPipelineComponent
attributes:
  spec: ../../../pipeline.yaml   # relative to this folder
  key_prefix: penguins
  group_name: penguins
```

The component is a thin declaration over :func:`~mlsteps_dagster.build_definitions`:
the same assets, gate checks, job and resources, with no Python in the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mlsteps_dagster.definitions import build_definitions
from mlsteps_dagster.kubernetes import K8sSettings


class MlstepsPipelineComponent(dg.Component, dg.Resolvable, dg.Model):
    """An mlsteps pipeline spec as Dagster assets, blocking gate checks and a job.

    Every step output becomes an asset keyed ``[*key_prefix, step_id, output]``; gate
    steps (``validate``, ``evaluate``) carry a blocking ``gate`` check. Artifact root,
    MLflow and Feast settings come from the spec unless the project defines the
    ``mlsteps``, ``mlsteps_mlflow`` or ``mlsteps_feast`` resources itself (then set
    ``include_resources: false`` here).
    """

    spec: str = Field(
        description="Path of the pipeline spec (pipeline.yaml), relative to this component's folder."
    )
    key_prefix: str | list[str] | None = Field(
        None, description="Prepended to every asset key; needed to load one spec twice."
    )
    group_name: str | None = Field(None, description="Asset group; defaults to the pipeline name.")
    job_name: str | None = Field(
        None, description="Name of the pipeline's job; defaults to [<key prefix>_]<pipeline name>."
    )
    include_resources: bool = Field(
        True,
        description="Add the default mlsteps resources (all unset: the spec decides). Turn off when the "
        "project defines resources with the keys mlsteps, mlsteps_mlflow and mlsteps_feast.",
    )
    execution: Literal["default", "kubernetes"] = Field(
        "default", description="'kubernetes' runs each step in its own pod (dagster-k8s k8s_job_executor)."
    )
    kubernetes: dict[str, Any] | None = Field(
        None,
        description="Pod settings for 'kubernetes' execution: image, namespace, env_secrets, env_vars, "
        "service_account_name, run_as_user... (mlsteps_dagster.kubernetes.K8sSettings).",
    )

    def spec_path(self, context: dg.ComponentLoadContext) -> Path:
        """The spec's path: as given if absolute, else relative to the component's folder."""
        path = Path(self.spec)
        folder = context.path if context.path.is_dir() else context.path.parent
        return path if path.is_absolute() else (folder / path).resolve()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """Load and validate the spec, and build its definitions (no step backend is imported)."""
        k8s = K8sSettings.model_validate(self.kubernetes) if self.kubernetes is not None else None
        defs = build_definitions(
            self.spec_path(context),
            key_prefix=self.key_prefix,
            group_name=self.group_name,
            job_name=self.job_name,
            execution=self.execution,
            k8s=k8s,
        )
        if self.include_resources:
            return defs
        return dg.Definitions(
            assets=defs.assets, jobs=defs.jobs, sensors=defs.sensors, executor=defs.executor
        )
