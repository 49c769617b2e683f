"""Sensors of the mlsteps provider."""
