"""The penguins pipeline and its drift monitor as Dagster assets: the retraining loop.

Run the UI with ``dagster dev -f examples/penguins/dagster_defs.py`` (after
``python examples/penguins/prepare_data.py``), or check it loads with
``dagster definitions validate -f examples/penguins/dagster_defs.py``.

* ``pipeline.yaml``: every step output becomes an asset (group ``penguins``);
  ``validate`` and ``evaluate`` also carry a blocking ``gate`` check that stops
  downstream assets. The ``penguins`` job materializes them all.
* ``monitor.yaml``: the ``monitor/report`` asset (group ``penguins_monitor``) and the
  ``penguins_monitor`` job, which checks ``data/next_batch.parquet`` against the
  champion's training data; the ``penguins_monitor_daily`` schedule runs it each day.
* Two sensors start the ``penguins`` job: ``penguins_drift_sensor`` when a monitor
  writes a ``drift`` report to the shared lineage under ``.mlsteps`` (the
  ``penguins_monitor`` job, or ``mlsteps monitor monitor.yaml`` run elsewhere), and
  ``penguins_data_sensor`` when ``data/penguins.parquet`` changes. Every step of a
  run started on drift records the report as its lineage ``trigger``.

The schedule and the sensors are off until switched on in the UI.
``dagster_project/`` declares the training pipeline as a dg Component in YAML.
"""

from pathlib import Path

import dagster as dg

from mlsteps_dagster import build_definitions, data_file_sensor, drift_sensor

HERE = Path(__file__).parent

# One Definitions object per module (Dagster loads exactly one): both specs merged.
# Their assets, jobs and groups are named after the pipelines, so they do not clash.
defs = dg.Definitions.merge(
    build_definitions(
        HERE / "pipeline.yaml",
        sensors=[
            # monitor.yaml writes its lineage to the same artifact root as pipeline.yaml.
            drift_sensor("penguins", HERE / ".mlsteps", model="penguins"),
            data_file_sensor("penguins", HERE / "data" / "penguins.parquet"),
        ],
    ),
    build_definitions(HERE / "monitor.yaml"),
    dg.Definitions(
        schedules=[
            dg.ScheduleDefinition(
                name="penguins_monitor_daily", job_name="penguins_monitor", cron_schedule="0 6 * * *"
            )
        ]
    ),
)
