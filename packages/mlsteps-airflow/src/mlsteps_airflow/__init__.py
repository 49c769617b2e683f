"""Airflow 3 provider for mlsteps (operators and DAG builder land with issue #5)."""

__version__ = "0.1.0"
