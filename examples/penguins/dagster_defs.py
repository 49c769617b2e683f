"""The penguins pipeline as Dagster assets, with retraining sensors.

Run the UI with ``dagster dev -f examples/penguins/dagster_defs.py`` (after
``python examples/penguins/prepare_data.py``), or check it loads with
``dagster definitions validate -f examples/penguins/dagster_defs.py``.
Every step output of ``pipeline.yaml`` becomes an asset; ``validate`` and
``evaluate`` also carry a blocking ``gate`` check that stops downstream assets.
The ``penguins`` job materializes them all; two sensors (off until switched on
in the UI) start it when ``mlsteps monitor monitor.yaml`` reports drift, or when
``data/penguins.parquet`` changes. ``dagster_project/`` declares the same pipeline
as a dg Component in YAML.
"""

from pathlib import Path

from mlsteps_dagster import build_definitions, data_file_sensor, drift_sensor

HERE = Path(__file__).parent

defs = build_definitions(
    HERE / "pipeline.yaml",
    sensors=[
        # monitor.yaml writes its lineage to the same artifact root as pipeline.yaml.
        drift_sensor("penguins", HERE / ".mlsteps", model="penguins"),
        data_file_sensor("penguins", HERE / "data" / "penguins.parquet"),
    ],
)
