"""The {{ cookiecutter.project_name }} pipeline as Dagster definitions: one asset per step output.

``dagster dev`` (with ``dagster-webserver``) or ``dagster asset materialize -m
{{ cookiecutter.project_slug }}.definitions --select '*'`` load this module. Loading only
reads and validates ``pipeline.yaml``; no ML library is imported until an asset
runs. ``validate`` and ``evaluate`` carry a blocking ``gate`` check that stops
downstream assets. Artifacts go to ``.mlsteps`` next to the spec, as with ``mlsteps run``.
"""

from pathlib import Path

from mlsteps_dagster import build_definitions

SPEC = Path(__file__).resolve().parents[1] / "pipeline.yaml"

defs = build_definitions(SPEC)
