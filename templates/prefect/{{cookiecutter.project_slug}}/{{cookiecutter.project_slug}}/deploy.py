"""Serve the pipeline as a Prefect deployment: ``python -m {{ cookiecutter.project_slug }}.deploy [--cron "0 6 * * *"]``.

The deployment loads the flow from this project directory (entrypoint
``{{ cookiecutter.project_slug }}/flow.py:flow``), so every run reads the project's
``pipeline.yaml``. ``serve`` registers it with the Prefect API and runs its
scheduled and manual runs (``prefect deployment run '{{ cookiecutter.project_slug }}/{{ cookiecutter.project_slug }}'``)
in this process until stopped. For a work pool, use the same source and
entrypoint with ``flow.deploy(...)`` or ``prefect deploy``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

PROJECT_DIR = Path(__file__).resolve().parents[1]
ENTRYPOINT = "{{ cookiecutter.project_slug }}/flow.py:flow"
NAME = {{ cookiecutter.project_slug | tojson }}


def deployment(cron: str | None = None) -> RunnerDeployment:
    """The deployment ``{{ cookiecutter.project_slug }}/{{ cookiecutter.project_slug }}``, optionally on a cron schedule."""
    from prefect import Flow

    flow = Flow.from_source(source=str(PROJECT_DIR), entrypoint=ENTRYPOINT)
    return flow.to_deployment(name=NAME, cron=cron, tags=["mlsteps"])


def main() -> None:
    from prefect import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cron", help="run on this cron schedule (default: manual runs only)")
    args = parser.parse_args()
    serve(deployment(cron=args.cron))


if __name__ == "__main__":
    main()
