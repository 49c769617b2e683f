"""Hooks of the mlsteps provider."""
