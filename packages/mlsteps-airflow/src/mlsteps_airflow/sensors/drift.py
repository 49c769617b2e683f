"""Wait for a drift report: the sensor variant of retraining on drift.

Data-aware scheduling (``schedule=[drift_asset(name)]``) is the first choice; this
sensor is for deployments where the monitor does not run under the same Airflow
(e.g. ``mlsteps monitor`` from cron, or another orchestrator) but writes lineage to
the same artifact root.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class DriftSensor(BaseSensorOperator):
    """Succeed once a ``monitor`` run recorded a drift report after ``after``.

    The XCom value is ``{"trigger": ..., "report": <report ref>}`` of the latest
    such report; mlsteps tasks given ``trigger_from=<this task id>`` (``build_dag``
    does it with ``wait_for_drift=``) record that trigger in their lineage.

    Args:
        model: Only reports of this registered model (the monitor's ``model:``), templated.
        after: ISO time; only reports of monitor runs that finished later count.
            Templated; default ``{{ data_interval_start }}``, so each DAG run waits
            for a report newer than its interval start.
        spec_path: A spec whose artifact root the monitor writes to.
        artifact_root: The artifact root, when no spec is given (default ``.mlsteps``).
        **kwargs: ``BaseSensorOperator`` arguments (``poke_interval``, ``timeout``, ``mode``...).
    """

    template_fields: Sequence[str] = ("model", "after")
    ui_color = "#e3f2e1"

    def __init__(
        self,
        *,
        model: str | None = None,
        after: str | None = "{{ data_interval_start }}",
        spec_path: str | os.PathLike[str] | None = None,
        artifact_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.after = after
        self.spec_path = os.fspath(spec_path) if spec_path is not None else None
        self.artifact_root = artifact_root

    def poke(self, context: Context) -> PokeReturnValue:
        from mlsteps.refs import dump_ref
        from mlsteps.storage import resolve_root
        from mlsteps.triggers import drift_reports

        if self.spec_path is not None:
            from mlsteps.spec import load_spec

            root = load_spec(self.spec_path).artifact_root(self.artifact_root)
        else:
            root = resolve_root(self.artifact_root or ".mlsteps", Path.cwd())
        after = datetime.fromisoformat(str(self.after)) if self.after else None
        found = drift_reports(root, model=self.model or None, after=after)
        if not found:
            self.log.info(
                "no drift report%s after %s under %s", f" for {self.model}" if self.model else "", after, root
            )
            return PokeReturnValue(is_done=False)
        latest = found[-1]
        self.log.info("drift report %s (monitor run %s)", latest.report.uri, latest.run_id)
        return PokeReturnValue(
            is_done=True, xcom_value={"trigger": latest.trigger(), "report": dump_ref(latest.report)}
        )
