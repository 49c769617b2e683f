from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, task

from kedro.framework.session import KedroSession
from kedro.framework.project import configure_project

# Kedro settings required to run your pipeline
env = "local"
pipeline_name = "penguins"
project_path = Path.cwd()
package_name = "penguins_kedro"
conf_source = "" or Path.cwd() / "conf"


def _run_kedro_node(node_names=None, namespaces=None):
    """Run a Kedro pipeline slice. Pass node_names for regular node groups or namespaces for namespace groups."""
    configure_project(package_name)
    with KedroSession.create(project_path=project_path, env=env, conf_source=conf_source) as session:
        if namespaces is not None:
            session.run(pipeline_names=[pipeline_name], namespaces=namespaces)
        else:
            session.run(pipeline_names=[pipeline_name], node_names=node_names)


@dag(
    dag_id="penguins-kedro",
    start_date=datetime(2023,1,1),
    max_active_runs=3,
    schedule="@once",
    catchup=False,
    default_args=dict(
        owner="airflow",
        depends_on_past=False,
        email_on_failure=False,
        email_on_retry=False,
        retries=1,
        retry_delay=timedelta(minutes=5)
    ),
)
def penguins_kedro():

    @task(task_id="validate")
    def validate():
        _run_kedro_node(node_names=["validate"])

    @task(task_id="featurise")
    def featurise():
        _run_kedro_node(node_names=["featurise"])

    @task(task_id="train")
    def train():
        _run_kedro_node(node_names=["train"])

    @task(task_id="evaluate")
    def evaluate():
        _run_kedro_node(node_names=["evaluate"])

    @task(task_id="register")
    def register():
        _run_kedro_node(node_names=["register"])

    @task(task_id="deploy")
    def deploy():
        _run_kedro_node(node_names=["deploy"])

    tasks = {
        "validate": validate(),
        "featurise": featurise(),
        "train": train(),
        "evaluate": evaluate(),
        "register": register(),
        "deploy": deploy(),
    }
    tasks["validate"] >> tasks["featurise"]
    tasks["featurise"] >> tasks["train"]
    tasks["train"] >> tasks["evaluate"]
    tasks["evaluate"] >> tasks["register"]
    tasks["train"] >> tasks["register"]
    tasks["register"] >> tasks["deploy"]


penguins_kedro()