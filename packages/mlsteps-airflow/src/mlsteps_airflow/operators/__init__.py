"""Operators of the mlsteps provider."""
