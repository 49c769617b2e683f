"""The penguins pipeline as a Prefect flow: the same ``pipeline.yaml``, run by Prefect.

Run it once with ``python examples/penguins/prefect_flow.py`` (after
``python examples/penguins/prepare_data.py``), or deploy the ``flow`` object,
e.g. ``flow.serve(name="penguins")``. Artifacts go to ``.mlsteps`` next to the
spec, exactly as with ``mlsteps run``.
"""

from pathlib import Path

from mlsteps_prefect import build_flow

flow = build_flow(Path(__file__).with_name("pipeline.yaml"))

if __name__ == "__main__":
    flow()
