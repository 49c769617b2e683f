"""Project pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from penguins_kedro.pipelines import penguins

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipeline = penguins.create_pipeline()
    return {"penguins": pipeline, "__default__": pipeline}
