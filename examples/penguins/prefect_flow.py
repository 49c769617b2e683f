"""The penguins pipeline as a Prefect flow: the same ``pipeline.yaml``, run by Prefect.

Run it once with ``python examples/penguins/prefect_flow.py`` (after
``python examples/penguins/prepare_data.py``), or deploy the ``flow`` object,
e.g. ``flow.serve(name="penguins")``, or to a Kubernetes work pool with
``prefect deploy --prefect-file prefect_deployment/prefect.yaml --all`` (see
docs/adapters/prefect.md). Artifacts go to ``.mlsteps`` next to the spec, exactly
as with ``mlsteps run``. Flow parameters: ``artifact_root``, ``mlflow_block``,
``feast_block`` and ``trigger`` (set by ``mlsteps_prefect.drift_automation``).
"""

from pathlib import Path

from mlsteps_prefect import build_flow

flow = build_flow(Path(__file__).with_name("pipeline.yaml"))

if __name__ == "__main__":
    flow()
