"""MLflow plumbing shared by the steps: one place that points MLflow at the context.

MLflow keeps its tracking URI in process-global state; steps call
:func:`configure` at the start of ``run`` so that two steps with different
contexts in one process (tests, the local runner) never cross wires.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlsteps._imports import require
from mlsteps.errors import BackendError, ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.types import Schema

    from mlsteps.context import RunContext

#: Model-version tag set by ``register``: the hash of the version's artifact files
#: (:func:`artifact_tree_hash`), checked by ``deploy`` before anything serves them.
ARTIFACT_HASH_TAG = "mlsteps.artifact_hash"

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class RegisteredModelUri:
    """A parsed ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``: exactly one of version and alias."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str, *, field: str = "model") -> RegisteredModelUri:
    """Parse a registered-model URI; a :class:`ConfigError` on ``field`` otherwise."""
    m = _MODEL_URI.fullmatch(uri.strip())
    if m is None:
        raise ConfigError(f"{field}: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    return RegisteredModelUri(m["name"], m["version"], m["alias"])


def get_model_version(client: MlflowClient, model: RegisteredModelUri) -> ModelVersion:
    """The registry's version ``model`` points at (an alias resolved now)."""
    try:
        if model.alias is not None:
            return client.get_model_version_by_alias(model.name, model.alias)
        return client.get_model_version(model.name, str(model.version))
    except Exception as exc:
        raise wrap(exc, f"could not resolve {model}") from exc


def configure(ctx: RunContext) -> MlflowClient:
    """Point MLflow at ``ctx``'s tracking and registry URIs and return a client."""
    mlflow = require("mlflow")
    if ctx.mlflow.token is not None:
        # MLflow reads the bearer token from the environment only.
        os.environ["MLFLOW_TRACKING_TOKEN"] = ctx.mlflow.token.get_secret_value()
    for what, uri in (("tracking", ctx.tracking_uri), ("registry", ctx.registry_uri)):
        if what == "tracking" or uri != ctx.tracking_uri:
            check_reachable(uri, what=what)
    mlflow.set_tracking_uri(ctx.tracking_uri)
    mlflow.set_registry_uri(ctx.registry_uri)
    client: MlflowClient = mlflow.MlflowClient(tracking_uri=ctx.tracking_uri, registry_uri=ctx.registry_uri)
    return client


#: Connection attempts of the reachability check (fewer when MLFLOW_HTTP_REQUEST_MAX_RETRIES is lower).
PROBE_ATTEMPTS = 3
#: Seconds to wait for a connection in the reachability check.
PROBE_CONNECT_TIMEOUT_S = 10
_SQL_SCHEMES = ("postgresql", "mysql", "mssql")


def check_reachable(uri: str, *, what: str = "tracking") -> None:
    """Fail fast, naming the URI, when an MLflow server or database does not accept connections.

    MLflow retries a refused connection for minutes (HTTP: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
    with exponential backoff; SQL stores: ten engine attempts over about 100 s) before
    failing with an error that does not say which setting to fix. One cheap connection
    (``GET <uri>/health``, or opening a database connection) tells a server that is down
    apart in seconds. Only a failure to *connect* counts: any HTTP answer, a TLS problem or
    a slow reply is left to MLflow. Credentials in the URI never appear in the message.
    """
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if scheme in ("http", "https"):
        _probe_http(uri, what)
    elif scheme in _SQL_SCHEMES:
        _probe_sql(uri, what)


def _uri_setting(what: str) -> str:
    option = "--tracking-uri, MLFLOW_TRACKING_URI" if what == "tracking" else "MLFLOW_REGISTRY_URI"
    return f"defaults.mlflow.{what}_uri in the spec ({option})"


def _attempts() -> int:
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES

    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    return max(1, min(PROBE_ATTEMPTS, 1 + (retries if retries is not None else PROBE_ATTEMPTS)))


def _probe_http(uri: str, what: str) -> None:
    import time
    from urllib.parse import urlsplit, urlunsplit

    import requests
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_TIMEOUT,
        MLFLOW_TRACKING_INSECURE_TLS,
        MLFLOW_TRACKING_SERVER_CERT_PATH,
    )

    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    safe = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    timeout = min(PROBE_CONNECT_TIMEOUT_S, MLFLOW_HTTP_REQUEST_TIMEOUT.get() or PROBE_CONNECT_TIMEOUT_S)
    verify: bool | str = True
    if MLFLOW_TRACKING_INSECURE_TLS.get():
        verify = False
    elif MLFLOW_TRACKING_SERVER_CERT_PATH.get():
        verify = str(MLFLOW_TRACKING_SERVER_CERT_PATH.get())
    attempts = _attempts()
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=(timeout, 30), verify=verify).close()
            return
        except requests.exceptions.SSLError:
            return  # reachable; MLflow reports the TLS problem itself
        except requests.exceptions.ConnectionError as exc:
            if attempt < attempts:
                time.sleep(attempt)
                continue
            reason = _root_reason(exc)
        except requests.exceptions.RequestException:
            return  # e.g. a read timeout: the server is there, MLflow decides
    raise BackendError(
        "mlflow",
        f"the MLflow {what} server at {safe} is unreachable ({attempts} attempt(s)): {reason}",
        hint=f"start the MLflow server (`mlflow server ...`) or fix the URI: {_uri_setting(what)}",
    )


def _root_reason(exc: BaseException) -> str:
    """The innermost message of a requests/urllib3 error (e.g. 'Connection refused')."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if marker in text:
            return marker
    return text


def _probe_sql(uri: str, what: str) -> None:
    import time

    sqlalchemy = require("sqlalchemy")
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    try:
        url = make_url(uri)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: MLflow reports it in its own words
        return
    connect_args = {"connect_timeout": PROBE_CONNECT_TIMEOUT_S} if url.get_backend_name() != "mssql" else {}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except ImportError as exc:
        raise BackendError(
            "mlflow",
            f"the {what} URI {url.render_as_string(hide_password=True)} needs the database driver "
            f"{exc.name or str(exc)!r}, which is not installed",
            hint=f"install it, or name an installed driver in the URI (e.g. {url.get_backend_name()}+psycopg2:// "
            f"with psycopg2 installed): {_uri_setting(what)}",
        ) from None
    except Exception:  # noqa: BLE001 - anything else is MLflow's to report
        return
    safe = url.render_as_string(hide_password=True)
    attempts = PROBE_ATTEMPTS
    reason = ""
    try:
        for attempt in range(1, attempts + 1):
            try:
                with engine.connect():
                    return
            except sqlalchemy.exc.OperationalError as exc:
                if attempt < attempts:
                    time.sleep(attempt)
                    continue
                reason = " ".join(str(exc.orig or exc).split())
                if url.password:
                    reason = reason.replace(str(url.password), "***")
            except Exception:  # noqa: BLE001 - anything but a refused connection is MLflow's to report
                return
    finally:
        engine.dispose()
    raise BackendError(
        "mlflow",
        f"cannot connect to the MLflow {what} database {safe} ({attempts} attempt(s)): {reason}",
        hint="check that the database server is running and accepts connections from here, and the "
        f"URI's host, port, user and database name: {_uri_setting(what)}",
    )


def ensure_experiment(ctx: RunContext, client: MlflowClient) -> str:
    """The id of the context's experiment, created (with artifacts under the artifact root) if missing."""
    name = ctx.experiment_name
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if ctx.mlflow.tracking_uri is None and ctx.store.local:
            location = ctx.store.local_dir("mlartifacts").as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except Exception:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)
    except Exception as exc:
        raise wrap(exc, "could not get or create the MLflow experiment " + repr(name)) from exc


def artifact_tree_hash(ctx: RunContext, model_uri: str) -> str:
    """Hash a registered version's artifact files (relative names and contents), as they are stored.

    ``register`` records it (:data:`ARTIFACT_HASH_TAG`); ``deploy`` recomputes it to refuse
    artifacts changed since, and the Kubernetes/KServe pods' init container
    (``python -m mlsteps.verify_model``) recomputes it on the copy they serve. The
    artifacts are downloaded to a temporary directory first.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlsteps-artifacts-") as tmp:
        return download_tree_hash(model_uri, tmp)


def download_tree_hash(model_uri: str, directory: str | os.PathLike[str]) -> str:
    """Download ``model_uri``'s artifacts into ``directory`` and hash them as :func:`artifact_tree_hash` does.

    The one definition of the recorded hash: ``register``, ``deploy`` and the pods'
    verification all go through here, so they hash the same files the same way
    (a ``models:/`` download also holds MLflow's ``registered_model_meta`` file).
    MLflow's tracking URI comes from the environment or :func:`configure`.
    """
    from mlsteps.hashing import hash_path

    artifacts = require("mlflow.artifacts")
    try:
        artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(directory))
    except Exception as exc:
        raise wrap(exc, f"could not download {model_uri} to hash it") from exc
    return hash_path(directory)


def pandas_dataset(
    df: pd.DataFrame, *, source: str, name: str, targets: str | None, content_hash: str | None
) -> PandasDataset:
    """An MLflow dataset for ``log_input``, described without a pass over every row in Python.

    ``mlflow.data.from_pandas`` hashes a sample for its digest and infers the schema
    element by element: 13 s for a million rows here, about a fifth of a training step.
    The digest is the start of mlsteps' content hash when there is one, and the schema
    is :func:`dataset_schema`'s.
    """
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import PandasDataset

    class _Described(PandasDataset):  # type: ignore[misc]  # mlflow ships no type hints
        @property
        def schema(self) -> Schema | None:
            return schema

    with warnings.catch_warnings():
        # A local path matches two equivalent source types; MLflow warns and picks one.
        warnings.simplefilter("ignore", UserWarning)
        resolved = resolve_dataset_source(source)  # as from_pandas does
    schema = dataset_schema(df)
    # Without a content hash, MLflow computes its own digest of df (digest=None).
    digest = content_hash.removeprefix("sha256:")[:8] if content_hash else None
    return _Described(df, source=resolved, targets=targets, name=name, digest=digest)


def dataset_schema(df: pd.DataFrame) -> Schema | None:
    """The schema MLflow would infer for ``df``, from each column's distinct values.

    A column's type is inferred from its distinct non-null values (the dtype decides it
    for numeric and datetime columns); "required" means no missing value. Where that is
    not possible (unhashable values, a column with no values) MLflow infers the column
    itself. ``None`` when MLflow cannot infer a schema, as ``PandasDataset.schema`` gives.
    """
    import warnings

    pd = require("pandas")
    from mlflow.types import ColSpec, Schema

    # What PandasDataset.schema calls (for the whole frame); test_train pins that the two agree.
    from mlflow.types.utils import _infer_schema

    specs: list[ColSpec] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint about integer columns and missing values
        try:
            for name in df.columns:
                col = df[name].reset_index(drop=True)
                present = col.dropna()
                try:
                    sample = present.drop_duplicates() if present.dtype == object else present.iloc[:1]
                except TypeError:  # unhashable values (lists, dicts)
                    sample = present
                if sample.empty:
                    sample = col
                (spec,) = _infer_schema(pd.DataFrame({name: sample.reset_index(drop=True)})).inputs
                specs.append(ColSpec(spec.type, name, required=not bool(col.isna().any())))
        except Exception:  # noqa: BLE001 - as PandasDataset.schema: e.g. numbers mixed with text
            return None
    return Schema(specs)


def wrap(exc: BaseException, doing: str) -> BackendError:
    """Turn an MLflow exception into a :class:`BackendError` that keeps its message."""
    return BackendError("mlflow", f"{doing}: {exc}", hint=_hint(str(exc)))


def _hint(message: str) -> str | None:
    lowered = message.lower()
    if "database is locked" in lowered:
        return "SQLite allows one writer; for parallel runs use `mlflow server` with PostgreSQL"
    if "connection refused" in lowered or "max retries exceeded" in lowered:
        return "is the MLflow server running and is the tracking URI right?"
    return None
