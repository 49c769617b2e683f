"""Airflow Assets that stand for mlsteps artifacts, for data-aware scheduling.

``register`` tasks list :func:`model_asset` as an outlet, so each successful
registration emits an asset event (its ``extra`` holds the model version, its
aliases and the run key); a training-consumer DAG scheduled on the asset runs
after every new version::

    with DAG("score_with_new_model", schedule=[model_asset("penguins")]):
        ...

The ``x-mlsteps`` URI scheme is Airflow's convention for schemes no provider
normalises (Airflow skips URI normalisation for ``x-`` schemes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlsteps.refs import BaseRef

MODEL_URI_PREFIX = "x-mlsteps://models/"


def model_asset(name: str) -> Asset:
    """The asset of registered model ``name``: one event per new or re-confirmed version."""
    return Asset(name=f"mlsteps.model.{name}", uri=f"{MODEL_URI_PREFIX}{name}", group="model")


def asset_events(outlets: Iterable[Any], outputs: Mapping[str, BaseRef]) -> dict[Asset, dict[str, Any]]:
    """The ``extra`` to attach to each of ``outlets`` that stands for one of ``outputs``.

    A model-version output annotates the asset of its registered model; outlets
    that match no output (user-declared ones) get no extra.
    """
    from mlsteps.refs import ModelVersionRef

    extras: dict[Asset, dict[str, Any]] = {}
    by_uri = {asset.uri: asset for asset in outlets if isinstance(asset, Asset)}
    for ref in outputs.values():
        if isinstance(ref, ModelVersionRef):
            asset = by_uri.get(f"{MODEL_URI_PREFIX}{ref.name}")
            if asset is not None:
                extras[asset] = {
                    "model": ref.name,
                    "version": ref.version,
                    "uri": ref.uri,
                    "aliases": list(ref.aliases),
                    "source_run_id": ref.source_run_id,
                    "reused": bool(ref.metadata.get("reused", False)),
                }
    return extras
