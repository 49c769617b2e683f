"""``build_definitions``: a pipeline spec as Dagster definitions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg

from mlsteps.spec import load_spec
from mlsteps_dagster.assets import build_step_asset, output_key
from mlsteps_dagster.kubernetes import K8S_CONFIG_TAG, K8sSettings, k8s_executor, step_k8s_config
from mlsteps_dagster.resources import default_resources

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from mlsteps.spec import PipelineSpec

#: How step ops execute: Dagster's default executor, or one Kubernetes pod per step.
Execution = Literal["default", "kubernetes"]


def pipeline_job_name(spec: PipelineSpec, key_prefix: Sequence[str] = ()) -> str:
    """The default name of the job that materializes a whole pipeline: ``[<prefix>_]<name>``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join([*key_prefix, spec.name]))


def build_definitions(
    spec_path: str | Path,
    *,
    key_prefix: str | Sequence[str] | None = None,
    group_name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    job_name: str | None = None,
    execution: Execution = "default",
    k8s: K8sSettings | Mapping[str, Any] | None = None,
    sensors: Sequence[dg.SensorDefinition] = (),
) -> dg.Definitions:
    """Load ``pipeline.yaml`` and turn it into Dagster definitions.

    Every step becomes one multi-asset with one asset per output, keyed
    ``[*key_prefix, step_id, output]``; dependencies follow the spec's wiring; each
    asset's value is the output's ref (a small JSON dict, never data). Gate steps
    (``validate``, ``evaluate``...) also carry a blocking asset check named ``gate``
    on their report asset, so a failed gate stops downstream materialization. A job
    materializing the whole pipeline is included, for schedules and sensors to start.

    The spec is loaded and fully validated here, so configuration errors surface when
    Dagster loads the code location, not halfway through a run. Building imports no
    step backend (MLflow, Feast, Great Expectations, scikit-learn, pandas).

    Args:
        spec_path: Path to the pipeline spec; relative paths in it resolve against its directory.
        key_prefix: Prepended to every asset key (a string or a list of path parts); use it
            to load several pipelines, or the same one twice, into one code location.
        group_name: Asset group of all the pipeline's assets; defaults to the pipeline name.
        resources: Resources replacing the defaults by key (``"mlsteps"``:
            :class:`MlstepsResource`, ``"mlsteps_mlflow"``: :class:`MlflowResource`,
            ``"mlsteps_feast"``: :class:`FeastResource`). The defaults set nothing, so each
            pipeline follows its own spec. Extra keys are added as they are.
        job_name: Name of the pipeline's job; defaults to ``[<key prefix>_]<pipeline name>``.
        execution: ``default`` runs steps with Dagster's default executor (a process per
            step); ``kubernetes`` runs each step in its own pod with dagster-k8s's
            ``k8s_job_executor`` (on the job, and as the code location's default executor).
        k8s: Pod settings for ``kubernetes`` execution (:class:`~mlsteps_dagster.kubernetes.K8sSettings`
            or a dict of its fields): image, namespace, secrets...
        sensors: Sensors to include, e.g. :func:`~mlsteps_dagster.drift_sensor` on this pipeline's job.

    Returns:
        Definitions holding the assets, their checks and the resources.

    Raises:
        mlsteps.errors.ConfigError: The spec is invalid (every problem listed, with file and line).
        pydantic.ValidationError: ``k8s`` is invalid.

    Example:
        ```python
        from pathlib import Path

        from mlsteps_dagster import build_definitions

        defs = build_definitions(Path(__file__).parent / "pipeline.yaml")
        ```
    """
    spec = load_spec(spec_path)
    prefix: tuple[str, ...] = (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix or ())
    group = group_name or spec.name
    settings: K8sSettings | None = None
    if execution == "kubernetes":
        settings = k8s if isinstance(k8s, K8sSettings) else K8sSettings.model_validate(k8s or {})
    elif k8s is not None:
        raise ValueError("k8s settings apply only with execution='kubernetes'")
    assets = [
        build_step_asset(
            spec,
            sid,
            key_prefix=prefix,
            group_name=group,
            op_tags={K8S_CONFIG_TAG: step_k8s_config(spec.steps[sid].spec.resources, settings)}
            if settings
            else None,
        )
        for sid in spec.order
    ]
    executor = k8s_executor(settings) if settings else None
    keys = [output_key(sid, out, prefix) for sid in spec.order for out in spec.steps[sid].step_cls.outputs]
    job = dg.define_asset_job(
        job_name or pipeline_job_name(spec, prefix),
        selection=dg.AssetSelection.assets(*keys),
        description=spec.model.description
        or f"Materialize every asset of the mlsteps pipeline {spec.name!r}.",
        executor_def=executor,
        tags={"mlsteps/pipeline": spec.name},
    )
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        sensors=list(sensors),
        resources={**default_resources(spec), **(resources or {})},
        executor=executor,
    )
