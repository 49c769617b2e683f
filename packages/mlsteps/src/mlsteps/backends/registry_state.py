"""A cheap fingerprint of one registered model's state in the MLflow Model Registry.

``evaluate`` (against the champion) and ``register`` depend on the registry as
well as on their inputs. Their cached results are reused only while the
fingerprint of the model they touched is unchanged: any version created,
deleted or updated, or any alias moved, changes it. Over-sensitivity only costs
a re-run; a stale hit would be wrong, so anything unexpected means "no
fingerprint" and the step runs.

For the embedded SQLite registry (the default) the fingerprint is read with
:mod:`sqlite3`, read-only, without importing MLflow (a 2-4 s import); for every
other registry it goes through :class:`mlflow.MlflowClient`.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from mlsteps.hashing import hash_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlsteps.context import RunContext

log = logging.getLogger(__name__)

#: MLflow marks deleted versions with this stage instead of removing the row at once.
_DELETED = "Deleted_Internal"


def model_fingerprint(ctx: RunContext, name: str, *, tags: bool = True) -> str | None:
    """A hash of ``name``'s versions, aliases and (``tags``) version tags; ``None`` if unreadable.

    Steps call it inside ``run`` and the runner before reusing their result: both
    take the same path for the same registry URI, so the two are comparable.
    Without ``tags`` it says which versions exist and where the aliases point,
    which is all a comparison with the champion depends on.
    """
    try:
        uri = ctx.registry_uri
    except ValueError:
        return None
    path = _sqlite_path(uri)
    if path is not None:
        state = _sqlite_state(path, name)
        if state is not None:
            return _hash(name, state, tags=tags)
    from mlsteps.backends import mlflow as backend

    try:
        client = backend.configure(ctx)
    except Exception as exc:  # noqa: BLE001 - no fingerprint means "run the step"
        log.debug("registry fingerprint: no MLflow client: %s", exc)
        return None
    state = _client_state(client, name)
    return _hash(name, state, tags=tags) if state is not None else None


def _hash(name: str, state: dict[str, Any], *, tags: bool) -> str:
    return hash_value({"model": name, **(state if tags else {k: v for k, v in state.items() if k != "tags"})})


def _sqlite_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path in ("/", "/:memory:"):
        return None
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy reads them.
    return Path(unquote(parsed.path[1:]))


def _sqlite_state(path: Path, name: str) -> dict[str, Any] | None:
    if not path.is_file():
        # No registry yet: nothing registered, a state like any other (the DB appears on first use).
        return {"versions": [], "aliases": [], "tags": []}
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        log.debug("registry fingerprint: cannot open %s: %s", path, exc)
        return None
    try:
        versions = con.execute(
            "SELECT version, current_stage, status, last_updated_time, source, run_id "
            "FROM model_versions WHERE name = ? AND current_stage != ? ORDER BY version",
            (name, _DELETED),
        ).fetchall()
        aliases = con.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ? ORDER BY alias", (name,)
        ).fetchall()
        tags = con.execute(
            "SELECT version, key, value FROM model_version_tags WHERE name = ?", (name,)
        ).fetchall()
    except sqlite3.Error as exc:
        # An empty DB (no tables yet) or a schema MLflow changed: let the client answer.
        log.debug("registry fingerprint: cannot read %s: %s", path, exc)
        return None
    finally:
        con.close()
    live = {str(v[0]) for v in versions}
    return {
        "versions": [[str(v[0]), *[str(x) for x in v[1:]]] for v in versions],
        "aliases": [[a, str(v)] for a, v in aliases],
        "tags": sorted([str(v), k, str(val)] for v, k, val in tags if str(v) in live),
    }


def _client_state(client: MlflowClient, name: str) -> dict[str, Any] | None:
    try:
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return {"versions": [], "aliases": [], "tags": []}
            raise
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception as exc:  # noqa: BLE001 - no fingerprint means "run the step", never a failure
        log.debug("registry fingerprint: cannot read %s through MLflow: %s", name, exc)
        return None
    rows = sorted(
        (
            [
                str(v.version),
                str(v.current_stage),
                str(v.status),
                str(v.last_updated_timestamp),
                str(v.source),
                str(v.run_id),
            ]
            for v in versions
            if v.current_stage != _DELETED
        ),
        key=lambda r: int(r[0]),
    )
    tags = sorted(
        [str(v.version), k, str(val)]
        for v in versions
        if v.current_stage != _DELETED
        for k, val in (v.tags or {}).items()
    )
    return {
        "versions": rows,
        "aliases": sorted([a, str(v)] for a, v in (model.aliases or {}).items()),
        "tags": tags,
    }
