"""Prefect 3 integration for mlsteps (tasks, flow builder and blocks land with issue #7)."""

__version__ = "0.1.0"
