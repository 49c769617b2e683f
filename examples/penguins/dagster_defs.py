"""The penguins pipeline as Dagster assets.

Run the UI with ``dagster dev -f examples/penguins/dagster_defs.py`` (after
``python examples/penguins/prepare_data.py``), or check it loads with
``dagster definitions validate -f examples/penguins/dagster_defs.py``.
Every step output of ``pipeline.yaml`` becomes an asset; ``validate`` and
``evaluate`` also carry a blocking ``gate`` check that stops downstream assets.
"""

from pathlib import Path

from mlsteps_dagster import build_definitions

defs = build_definitions(Path(__file__).parent / "pipeline.yaml")
