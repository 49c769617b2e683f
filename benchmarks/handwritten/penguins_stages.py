"""The hand-written penguins stages as task bodies that pass file paths and ids, for orchestrators.

The task/asset bodies of ``airflow_pipeline.py``, ``dagster_pipeline.py`` and
``prefect_pipeline.py`` (the baselines of ``benchmarks/adapter_overhead.py``). Each one
calls :mod:`penguins_direct`'s functions (GX, Feast, scikit-learn and MLflow directly,
the example's settings) and hands the next stage a file path or an MLflow id, as tasks
that may run in separate processes must. The project directory (``data/``,
``feature_repo/``) comes from ``PENGUINS_PROJECT``; MLflow and the intermediate files go
to ``PROJECT/.direct``, as with ``penguins_direct.py``. No library is imported at module
level, so a DAG file importing this module parses as fast as one that does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The stages in order; ``PENGUINS_UNTIL`` (default ``register``) names the last one to run.
STAGES = ("validate", "featurise", "train", "evaluate", "register")
MAX_ROWS = 100_000  # the example's row-count expectation


def project() -> Path:
    return Path(os.environ["PENGUINS_PROJECT"]).resolve()


def until() -> str:
    return os.environ.get("PENGUINS_UNTIL", "register")


def runs(stage: str) -> bool:
    """Whether ``stage`` is part of this run (it is at or before ``PENGUINS_UNTIL``)."""
    return STAGES.index(stage) <= STAGES.index(until())


def _store() -> Path:
    import mlflow

    store = project() / ".direct"
    store.mkdir(exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    return store


def validate() -> str:
    import pandas as pd
    from penguins_direct import validate

    data = project() / "data" / "penguins.parquet"
    validate(pd.read_parquet(data), MAX_ROWS)
    return str(data)


def featurise(data: str) -> str:
    import pandas as pd
    from penguins_direct import featurise

    out = project() / ".direct"
    out.mkdir(exist_ok=True)
    features = featurise(project() / "feature_repo", pd.read_parquet(data))
    path = out / "features.parquet"
    features.to_parquet(path, index=False)
    return str(path)


def train(features: str) -> dict[str, str]:
    import pandas as pd
    from penguins_direct import train

    store = _store()
    model_uri, run_id, X_test, y_test = train(pd.read_parquet(features))
    test = store / "test.parquet"
    X_test.assign(species=y_test).to_parquet(test)
    return {"model_uri": model_uri, "run_id": run_id, "test_data": str(test)}


def evaluate(trained: dict[str, str]) -> dict[str, float]:
    import pandas as pd
    from penguins_direct import evaluate

    _store()
    test = pd.read_parquet(trained["test_data"])
    return evaluate(trained["model_uri"], trained["run_id"], test.drop(columns=["species"]), test["species"])


def register(trained: dict[str, str], metrics: dict[str, Any]) -> str:
    from penguins_direct import register

    _store()
    return register(trained["model_uri"], metrics)
