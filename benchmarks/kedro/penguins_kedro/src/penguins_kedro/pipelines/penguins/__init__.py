"""The penguins pipeline: validate, featurise, train, evaluate, register, deploy."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
