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

from airflow.sdk import Asset, AssetAlias

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlsteps.refs import BaseRef

MODEL_URI_PREFIX = "x-mlsteps://models/"
DRIFT_URI_PREFIX = "x-mlsteps://drift/"
DRIFT_ALIAS_PREFIX = "mlsteps.drift-alias."


def model_asset(name: str) -> Asset:
    """The asset of registered model ``name``: one event per new or re-confirmed version."""
    return Asset(name=f"mlsteps.model.{name}", uri=f"{MODEL_URI_PREFIX}{name}", group="model")


def drift_asset(name: str) -> Asset:
    """The asset of drift detected for model ``name``: an event only when a monitor says drift.

    Schedule the retraining DAG on it: ``DAG("retrain", schedule=[drift_asset("penguins")])``.
    """
    return Asset(name=f"mlsteps.drift.{name}", uri=f"{DRIFT_URI_PREFIX}{name}", group="drift")


def drift_alias(name: str) -> AssetAlias:
    """The outlet of a ``monitor`` task: resolves to :func:`drift_asset` only when drift is found.

    A task emits events for every plain asset outlet when it succeeds; through an
    alias it emits only what it adds at run time, so "no drift" emits nothing.
    """
    return AssetAlias(name=f"{DRIFT_ALIAS_PREFIX}{name}", group="drift")


def model_name_of(model_uri: object) -> str | None:
    """``NAME`` of a literal ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (None for templates)."""
    if not isinstance(model_uri, str) or "{{" in model_uri:
        return None
    from mlsteps.backends.mlflow import parse_model_uri
    from mlsteps.errors import ConfigError

    try:
        return parse_model_uri(model_uri).name
    except ConfigError:
        return None


def drift_events(
    outlets: Iterable[Any], outputs: Mapping[str, BaseRef]
) -> dict[AssetAlias, tuple[Asset, dict[str, Any]]]:
    """For each drift alias outlet: the drift asset to emit and its extra, when a report says drift."""
    from mlsteps.refs import ReportRef

    reports = [
        r for r in outputs.values() if isinstance(r, ReportRef) and r.summary.get("verdict") == "drift"
    ]
    events: dict[AssetAlias, tuple[Asset, dict[str, Any]]] = {}
    if not reports:
        return events
    report = reports[0]
    for alias in outlets:
        if isinstance(alias, AssetAlias) and alias.name.startswith(DRIFT_ALIAS_PREFIX):
            name = alias.name.removeprefix(DRIFT_ALIAS_PREFIX)
            extra = {
                "model": name,
                "report": report.uri,
                "html": report.html_uri,
                "drifted_features": report.summary.get("drifted_features"),
                "drift_share": report.summary.get("drift_share"),
            }
            events[alias] = (drift_asset(name), {k: v for k, v in extra.items() if v is not None})
    return events


def drift_trigger(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The drift event that started this DAG run, as a lineage ``trigger`` (None if none did).

    A DAG scheduled on :func:`drift_asset` gets the event in ``triggering_asset_events``;
    every step of that run records which drift report triggered it.
    """
    events = context.get("triggering_asset_events") or {}
    for asset, asset_events in events.items():
        if not str(getattr(asset, "uri", "")).startswith(DRIFT_URI_PREFIX):
            continue
        for event in asset_events:
            extra = dict(getattr(event, "extra", None) or {})
            if extra.get("report"):
                return {
                    "kind": "drift",
                    "orchestrator": "airflow",
                    "report": extra["report"],
                    "model": extra.get("model"),
                    "monitor_run_key": extra.get("run_key"),
                    "drifted_features": extra.get("drifted_features"),
                }
    return None


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
