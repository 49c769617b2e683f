"""The penguins pipeline hand-written with Airflow's @task, libraries imported inside tasks.

The baseline for parse cost: what a careful team writes without mlsteps. Not run
by the benchmark (only parsed), so the task bodies are sketches.
"""

from __future__ import annotations

from airflow.sdk import DAG, task


def penguins_dag(dag_id: str = "penguins_handwritten") -> DAG:
    with DAG(dag_id, schedule=None, tags=["handwritten"]) as dag:

        @task
        def validate() -> dict:
            import great_expectations as gx  # noqa: F401

            return {"uri": "data/penguins.parquet"}

        @task
        def featurise(dataset: dict) -> dict:
            import feast  # noqa: F401

            return dataset

        @task
        def train(dataset: dict) -> dict:
            import mlflow  # noqa: F401
            import sklearn.ensemble  # noqa: F401

            return {"model": "models:/m"}

        @task
        def evaluate(model: dict, dataset: dict) -> dict:
            import mlflow  # noqa: F401

            return {"passed": True}

        @task
        def register(model: dict, evaluation: dict) -> dict:
            import mlflow  # noqa: F401

            return {"version": "1"}

        @task
        def deploy(version: dict) -> dict:
            import mlflow  # noqa: F401

            return {"endpoint": "http://127.0.0.1:5001"}

        data = featurise(validate())
        model = train(data)
        deploy(register(model, evaluate(model, data)))
    return dag


dag = penguins_dag()
