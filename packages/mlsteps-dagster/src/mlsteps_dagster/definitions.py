"""``build_definitions``: a pipeline spec as Dagster definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from mlsteps.spec import load_spec
from mlsteps_dagster.assets import build_step_asset
from mlsteps_dagster.resources import default_resources

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path


def build_definitions(
    spec_path: str | Path,
    *,
    key_prefix: str | Sequence[str] | None = None,
    group_name: str | None = None,
    resources: Mapping[str, Any] | None = None,
) -> dg.Definitions:
    """Load ``pipeline.yaml`` and turn it into Dagster definitions.

    Every step becomes one multi-asset with one asset per output, keyed
    ``[*key_prefix, step_id, output]``; dependencies follow the spec's wiring; each
    asset's value is the output's ref (a small JSON dict, never data). Gate steps
    (``validate``, ``evaluate``...) also carry a blocking asset check named ``gate``
    on their report asset, so a failed gate stops downstream materialization.

    The spec is loaded and fully validated here, so configuration errors surface when
    Dagster loads the code location, not halfway through a run. Building imports no
    step backend (MLflow, Feast, Great Expectations, scikit-learn, pandas).

    Args:
        spec_path: Path to the pipeline spec; relative paths in it resolve against its directory.
        key_prefix: Prepended to every asset key (a string or a list of path parts); use it
            to load several pipelines, or the same one twice, into one code location.
        group_name: Asset group of all the pipeline's assets; defaults to the pipeline name.
        resources: Resources replacing the defaults built from the spec, by key
            (``"mlsteps"``: :class:`MlstepsResource`, ``"mlsteps_mlflow"``: :class:`MlflowResource`).
            Extra keys are added as they are.

    Returns:
        Definitions holding the assets, their checks and the resources.

    Raises:
        mlsteps.errors.ConfigError: The spec is invalid (every problem listed, with file and line).

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
    assets = [build_step_asset(spec, sid, key_prefix=prefix, group_name=group) for sid in spec.order]
    return dg.Definitions(assets=assets, resources={**default_resources(spec), **(resources or {})})
