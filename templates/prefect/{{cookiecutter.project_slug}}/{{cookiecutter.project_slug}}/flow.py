"""The {{ cookiecutter.project_name }} pipeline as a Prefect flow: one task run per step of ``pipeline.yaml``.

``python -m {{ cookiecutter.project_slug }}.flow`` runs it once (against ``PREFECT_API_URL``,
or a temporary local server when that is unset). Building the flow only loads and
validates the spec; no ML library is imported until a task runs. Artifacts go to
``.mlsteps`` next to the spec, as with ``mlsteps run``. ``deploy.py`` serves it as
a deployment.
"""

from pathlib import Path

from mlsteps_prefect import build_flow

SPEC = Path(__file__).resolve().parents[1] / "pipeline.yaml"

flow = build_flow(SPEC)

if __name__ == "__main__":
    flow()
