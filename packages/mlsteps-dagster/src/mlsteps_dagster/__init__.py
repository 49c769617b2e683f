"""Dagster integration for mlsteps (assets, checks and resources land with issue #6)."""

__version__ = "0.1.0"
