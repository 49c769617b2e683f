"""The ``train`` step: fit a scikit-learn-compatible estimator and log it to MLflow.

The step splits a dataset into train and test parts (randomly, stratified, or
by time), fits the estimator named by an import path (optionally behind a
built-in imputation/one-hot preprocessing), scores it on the held-out part and
logs params, the input dataset, metrics and the model to one MLflow run. It
writes both splits as parquet so ``evaluate`` can score the same held-out rows.

A retry of the same step in the same pipeline run reuses the MLflow run an
earlier attempt finished instead of training (and logging) a second model.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.data import check_feature_columns
from mlsteps.errors import ConfigError, DataError, MlstepsError, Problem
from mlsteps.hashing import hash_bytes, hash_file, hash_value
from mlsteps.refs import BaseRef, DatasetRef, ModelRef, RefKind
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.steps._common import (
    DEFAULT_METRICS,
    Task,
    check_target,
    compute_metrics,
    import_object,
    infer_task,
    normalise_features,
    predict,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    from mlflow import MlflowClient

    from mlsteps.context import RunContext

#: Tag marking a run whose outputs were all logged (set last, just before the run ends).
COMPLETE_TAG = "mlsteps.complete"
#: Tag holding a hash of the config and input dataset, so a retry with changed config trains again.
WORK_TAG = "mlsteps.train_work"
#: Where the step's result (output refs and metrics) is stored in the run, for retries.
RESULT_ARTIFACT = "mlsteps/result.json"


class PreprocessingConfig(StepConfig):
    """Built-in preprocessing placed in front of the estimator, so raw tables train as they are."""

    enabled: bool = Field(
        True,
        description="Impute numeric columns with the median and one-hot encode categorical ones "
        "(missing categories become their own category) in a ColumnTransformer.",
    )
    scale_numeric: bool = Field(
        True, description="Standardise numeric columns after imputing (helps linear models converge)."
    )


class SplitConfig(StepConfig):
    """How the held-out test set is chosen."""

    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for testing.")
    stratify: bool | None = Field(
        None,
        description="Keep class proportions in both splits; default true for classification. "
        "Not allowed for regression or with time_column.",
    )
    time_column: str | None = Field(
        None,
        description="If set, the most recent test_fraction of rows by this column are the test set "
        "(no shuffling).",
    )

    @model_validator(mode="after")
    def _stratify_or_time(self) -> SplitConfig:
        if self.time_column and self.stratify:
            raise ValueError("stratify cannot be combined with time_column (a time split is not shuffled)")
        return self


class TrainConfig(StepConfig):
    """Configuration of the ``train`` step."""

    estimator: str | None = Field(
        None,
        description="Import path of an estimator class with fit/predict, e.g. "
        "'sklearn.ensemble.RandomForestClassifier'. Exactly one of estimator and custom_train.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the estimator. A nested {class: <import path>, params: {...}} "
        "value is built as an estimator too (for meta-estimators).",
    )
    custom_train: str | None = Field(
        None,
        description="Import path of a function fn(X_train, y_train, params, seed) -> fitted estimator, "
        "used instead of estimator. It receives the raw features (no built-in preprocessing).",
    )
    preprocessing: PreprocessingConfig = Field(
        default_factory=PreprocessingConfig,
        description="Built-in preprocessing; `false` switches it off.",
    )
    target: str = Field(description="The column to predict.")
    features: list[str] | None = Field(
        None, description="Feature columns; default all columns except target, exclude and time_column."
    )
    exclude: list[str] = Field(
        default_factory=list, description="Columns never used as features (ids, timestamps...)."
    )
    task: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description="auto: classification when the target is non-numeric, boolean, or an integer with "
        "at most 20 distinct values (or whole-number floats with at most 10); regression otherwise.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="The train/test split.")
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed for the split and every unset random_state of the estimator."
    )
    drop_na_target: bool = Field(
        False, description="Drop rows whose target is missing instead of failing on them."
    )
    serialization_format: Literal["skops", "cloudpickle"] = Field(
        "skops",
        description="How MLflow stores the model: skops (MLflow's safe default) or cloudpickle "
        "(needed for objects skops cannot serialise, e.g. classes defined in a function).",
    )
    extra_pip_requirements: list[str] = Field(
        default_factory=list, description="Extra pip requirements recorded with the model."
    )

    @field_validator("preprocessing", mode="before")
    @classmethod
    def _bool_shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if (self.estimator is None) == (self.custom_train is None):
            raise ValueError("set exactly one of 'estimator' and 'custom_train'")
        if self.features is not None:
            if not self.features:
                raise ValueError("'features' must not be empty; leave it out to use every other column")
            if self.target in self.features:
                raise ValueError(f"the target {self.target!r} cannot also be a feature")
            clash = sorted(set(self.features) & set(self.exclude))
            if clash:
                raise ValueError(f"columns {clash} are both in 'features' and 'exclude'")
        if self.target in self.exclude:
            raise ValueError(f"the target {self.target!r} is listed in 'exclude'")
        return self


class TrainStep(Step[TrainConfig]):
    """Fit an estimator, score it on a held-out split and log it to MLflow."""

    name = "train"
    version = "1"
    description = "fit a scikit-learn-compatible estimator and log it to MLflow"
    config_model = TrainConfig
    inputs: ClassVar[dict[str, InputSpec]] = {
        "dataset": InputSpec("dataset", description="The table with features and target.")
    }
    outputs: ClassVar[dict[str, RefKind]] = {
        "model": "model",
        "train_data": "dataset",
        "test_data": "dataset",
    }

    def run(self, ctx: RunContext, config: TrainConfig, inputs: dict[str, BaseRef]) -> StepResult:
        from mlsteps.backends import mlflow as backend
        from mlsteps.data import read_dataframe

        dataset = inputs["dataset"]
        assert isinstance(dataset, DatasetRef)
        # The data is read and checked before MLflow is touched: bad data fails the step
        # without creating an experiment or a run, whether or not the tracking server is up.
        df = read_dataframe(dataset)
        prepared = _prepare(df, config, uri=dataset.uri)
        client = backend.configure(ctx)
        experiment_id = backend.ensure_experiment(ctx, client)
        work = hash_value(
            {
                "version": self.version,
                "config": config.model_dump(mode="json"),
                "dataset": dataset.fingerprint(),
            }
        )
        reused = _finished_attempt(ctx, client, experiment_id, work)
        if reused is not None:
            ctx.logger.info("train: reusing MLflow run %s of an earlier attempt", reused.metrics)
            return reused

        train_df, test_df = _split(prepared.frame, config, prepared.task, uri=dataset.uri)
        X_train = normalise_features(train_df[prepared.features])
        X_test = normalise_features(test_df[prepared.features])
        y_train, y_test = train_df[config.target], test_df[config.target]

        model = _fit(config, prepared, X_train, y_train, uri=dataset.uri)
        pred = predict(model, X_test, task=prepared.task)
        metrics, skipped = compute_metrics(DEFAULT_METRICS[prepared.task], y_test, pred)
        for name, reason in skipped.items():
            ctx.logger.warning("train: metric %s not computed: %s", name, reason)

        step_dir = ctx.step_dir()
        from mlsteps.data import write_dataset

        train_ref = write_dataset(train_df, str(step_dir / "train.parquet"), role="train")
        test_ref = write_dataset(test_df, str(step_dir / "test.parquet"), role="test")

        model_ref = _log_to_mlflow(
            ctx,
            client,
            experiment_id,
            config=config,
            dataset=dataset,
            df=df,
            prepared=prepared,
            model=model,
            X_train=X_train,
            metrics=metrics,
            refs={"train_data": train_ref, "test_data": test_ref},
            work=work,
        )
        return StepResult(
            outputs={"model": model_ref, "train_data": train_ref, "test_data": test_ref}, metrics=metrics
        )


class _Prepared:
    """The cleaned input table and what was decided about it."""

    def __init__(self, frame: pd.DataFrame, task: Task, features: list[str], dropped: int) -> None:
        self.frame = frame
        self.task = task
        self.features = features
        self.dropped = dropped


def _prepare(df: pd.DataFrame, config: TrainConfig, *, uri: str) -> _Prepared:
    """Check columns and target, pick the features and decide the task."""
    pd = __import__("pandas")
    if df.empty:
        raise DataError(
            f"{uri}: the dataset has no rows ({len(df.columns)} column(s)); check the step or job that wrote it"
        )
    columns = [str(c) for c in df.columns]
    if config.target not in columns:
        raise DataError(f"{uri}: target column {config.target!r} not found; columns are {columns}")
    for field_name, names in (("exclude", config.exclude), ("features", config.features or [])):
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(
                f"{uri}: column(s) {missing} named in train.config.{field_name} not found; "
                f"columns are {columns}"
            )
    time_column = config.split.time_column
    if time_column and time_column not in columns:
        raise DataError(f"{uri}: split time_column {time_column!r} not found")

    dropped = 0
    if config.drop_na_target:
        keep = df[config.target].notna()
        dropped = int((~keep).sum())
        df = df.loc[keep]
    df = df.reset_index(drop=True)
    task: Task = infer_task(df[config.target]) if config.task == "auto" else config.task
    check_target(df[config.target], task=task, uri=uri, column=config.target)
    if task == "regression" and not pd.api.types.is_numeric_dtype(df[config.target]):
        raise DataError(
            f"{uri}: target column {config.target!r} has dtype {df[config.target].dtype} "
            "but the task is regression"
        )

    if config.features is not None:
        features = list(config.features)
    else:
        skip = {config.target, *config.exclude, *([time_column] if time_column else [])}
        features = [c for c in columns if c not in skip]
    if not features:
        raise DataError(f"{uri}: no feature columns left after removing the target and exclude")
    check_feature_columns(df, features, uri=uri, exclude_field="train.config.exclude")
    if config.preprocessing.enabled and config.custom_train is None:
        api = pd.api.types
        for col in features:
            dtype = df[col].dtype
            if api.is_datetime64_any_dtype(dtype) or api.is_timedelta64_dtype(dtype):
                raise DataError(
                    f"{uri}: feature column {col!r} has dtype {dtype}, which the built-in preprocessing "
                    "cannot encode; add it to train.config.exclude or derive numeric features from it"
                )
    return _Prepared(df, task, features, dropped)


def _split(
    df: pd.DataFrame, config: TrainConfig, task: Task, *, uri: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the test rows: the most recent by time_column, else a seeded (stratified) sample."""
    split = config.split
    n = len(df)
    n_test = min(max(1, math.ceil(n * split.test_fraction)), n - 1) if n > 1 else 0
    if n_test < 1:
        raise DataError(f"{uri}: {n} row(s) cannot be split into a train and a test set")
    if split.time_column:
        ordered = df.sort_values(split.time_column, kind="mergesort").reset_index(drop=True)
        train_df, test_df = ordered.iloc[: n - n_test], ordered.iloc[n - n_test :]
        if task == "classification" and train_df[config.target].nunique() < 2:
            raise DataError(
                f"{uri}: the training rows before the time split hold a single class of "
                f"{config.target!r}; lower split.test_fraction or add data"
            )
        if task == "classification":
            unseen = sorted(map(str, set(test_df[config.target]) - set(train_df[config.target])))
            if unseen:
                warnings.warn(
                    f"{uri}: classes {unseen} of {config.target!r} occur only after the time split; "
                    "the model cannot predict them",
                    UserWarning,
                    stacklevel=2,
                )
        return train_df.reset_index(drop=True), test_df.reset_index(drop=True)

    if task == "regression" and split.stratify:
        raise ConfigError(
            [Problem(None, "train.config.split.stratify", "stratify applies to classification only")]
        )
    stratify = task == "classification" if split.stratify is None else split.stratify
    from sklearn.model_selection import train_test_split

    try:
        train_df, test_df = train_test_split(
            df,
            test_size=n_test,
            random_state=config.seed,
            stratify=df[config.target] if stratify else None,
        )
    except ValueError as exc:
        raise DataError(f"{uri}: cannot split on target column {config.target!r}: {exc}") from exc
    return train_df.reset_index(drop=True), test_df.reset_index(drop=True)


def _resolve_params(value: Any, *, path: str) -> Any:
    """Build nested ``{class: ..., params: {...}}`` values into estimators, recursively."""
    if isinstance(value, dict):
        if "class" in value and set(value) <= {"class", "params"} and isinstance(value["class"], str):
            cls = import_object(value["class"], config_path=f"{path}.class")
            kwargs = _resolve_params(value.get("params") or {}, path=f"{path}.params")
            return _instantiate(cls, kwargs, path=f"{path}.class", params_path=f"{path}.params")
        return {k: _resolve_params(v, path=f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_params(v, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _instantiate(cls: Any, kwargs: dict[str, Any], *, path: str, params_path: str) -> Any:
    if not isinstance(cls, type):
        raise ConfigError([Problem(None, path, f"{cls!r} is not a class")])
    missing = [m for m in ("fit", "predict") if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            [Problem(None, path, f"{cls.__module__}.{cls.__qualname__} has no {' or '.join(missing)} method")]
        )
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError([Problem(None, params_path, f"cannot build {cls.__qualname__}: {exc}")]) from exc


def _build_estimator(config: TrainConfig, prepared: _Prepared, X_train: pd.DataFrame) -> Any:
    """The estimator (behind the preprocessing when enabled), with every unset random_state seeded."""
    assert config.estimator is not None
    cls = import_object(config.estimator, config_path="train.config.estimator")
    params = _resolve_params(config.params, path="train.config.params")
    estimator = _instantiate(cls, params, path="train.config.estimator", params_path="train.config.params")
    _seed(estimator, config.seed)
    if not config.preprocessing.enabled:
        return estimator
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pd = __import__("pandas")
    api = pd.api.types
    numeric = [
        c for c in prepared.features if api.is_numeric_dtype(X_train[c]) and not api.is_bool_dtype(X_train[c])
    ]
    categorical = [c for c in prepared.features if c not in numeric]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if config.preprocessing.scale_numeric:
        num_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(num_steps), numeric))
    if categorical:
        # Missing values (None) become a category of their own; unseen categories encode as all zeros.
        transformers.append(("categorical", OneHotEncoder(handle_unknown="ignore"), categorical))
    return Pipeline(
        [("preprocess", ColumnTransformer(transformers, remainder="drop")), ("estimator", estimator)]
    )


def _seed(estimator: Any, seed: int) -> None:
    """Set every ``random_state`` the user left unset (None), including nested estimators'."""
    if not hasattr(estimator, "get_params"):
        return
    unset = {
        k: seed
        for k, v in estimator.get_params(deep=True).items()
        if k.endswith("random_state") and v is None
    }
    if unset:
        estimator.set_params(**unset)


def _fit(
    config: TrainConfig, prepared: _Prepared, X_train: pd.DataFrame, y_train: pd.Series, *, uri: str
) -> Any:
    """Fit the configured estimator or call the user's training function."""
    if config.custom_train is not None:
        fn = import_object(config.custom_train, config_path="train.config.custom_train")
        if not callable(fn):
            raise ConfigError(
                [Problem(None, "train.config.custom_train", f"{config.custom_train!r} is not callable")]
            )
        model = fn(X_train, y_train, dict(config.params), config.seed)
        if not callable(getattr(model, "predict", None)):
            raise MlstepsError(
                f"train.config.custom_train {config.custom_train!r} returned {type(model).__name__}, "
                "which has no predict method"
            )
        return model
    model = _build_estimator(config, prepared, X_train)
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        model.fit(X_train, y_train)
    except InvalidParameterError as exc:
        raise ConfigError([Problem(None, "train.config.params", str(exc))]) from exc
    except ValueError as exc:
        message = f"{uri}: fitting {config.estimator} failed on the training split: {exc}"
        holes = [str(c) for c in X_train.columns if bool(X_train[c].isna().any())]
        if holes:
            message += (
                f"; feature column(s) {holes} have missing values, which this estimator does not accept: "
                "enable train.config.preprocessing (it imputes them), fill them, or drop those rows"
            )
        raise DataError(message) from exc
    return model


def _model_hash(model: Any) -> str:
    """A deterministic identity for the fitted model.

    The logged MLflow artifact directory is not usable for this: its ``MLmodel``
    file records a creation time, a model uuid, the run id and model id, and the
    skops file is a zip whose entries carry timestamps. The pickled estimator is a
    function of data, config and seed only, so that is what is hashed.
    """
    try:
        return hash_bytes(pickle.dumps(model, protocol=4))
    except (pickle.PicklingError, TypeError, AttributeError):
        cloudpickle = require("cloudpickle")
        return hash_bytes(cloudpickle.dumps(model, protocol=4))


def _walk(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """Every estimator nested in ``obj`` (pipeline steps, meta-estimator parameters)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list | tuple):
        for item in obj:
            yield from _walk(item, seen)
        return
    if not hasattr(obj, "get_params") or isinstance(obj, type):
        return
    yield obj
    for value in obj.get_params(deep=False).values():
        yield from _walk(value, seen)


def _pip_requirements(model: Any, config: TrainConfig) -> list[str]:
    """Requirements for the logged model, without MLflow's slow subprocess-based inference.

    MLflow's inference loads the model in a fresh interpreter (about 15 s here); the
    packages that provide the model's classes are known directly.
    """
    import importlib.metadata as md

    import mlflow.sklearn

    reqs: list[str] = list(
        mlflow.sklearn.get_default_pip_requirements(
            include_cloudpickle=config.serialization_format == "cloudpickle",
            include_skops=config.serialization_format == "skops",
        )
    )
    tops = {type(o).__module__.split(".")[0] for o in _walk(model)} - {"sklearn", "builtins", "__main__"}
    if tops:
        dists = md.packages_distributions()
        for top in sorted(tops):
            for dist in dists.get(top, []):
                req = f"{dist}=={md.version(dist)}"
                if req not in reqs:
                    reqs.append(req)
    return [*reqs, *config.extra_pip_requirements]


def _flat_params(config: TrainConfig, prepared: _Prepared) -> dict[str, str]:
    """Run params as MLflow wants them: flat string values of bounded length."""
    out: dict[str, Any] = {
        "estimator": config.estimator or f"custom_train:{config.custom_train}",
        "task": prepared.task,
        "target": config.target,
        "features": json.dumps(prepared.features),
        "seed": config.seed,
        "preprocessing": json.dumps(config.preprocessing.model_dump()),
        "split.test_fraction": config.split.test_fraction,
        "split.stratify": config.split.stratify,
        "split.time_column": config.split.time_column,
        "rows_dropped_na_target": prepared.dropped,
    }

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                flatten(f"{prefix}.{k}", v)
        else:
            out[prefix] = json.dumps(value) if isinstance(value, list | dict) else value

    flatten("params", config.params)
    return {k: str(v)[:500] for k, v in out.items()}


def _log_to_mlflow(
    ctx: RunContext,
    client: MlflowClient,
    experiment_id: str,
    *,
    config: TrainConfig,
    dataset: DatasetRef,
    df: pd.DataFrame,
    prepared: _Prepared,
    model: Any,
    X_train: pd.DataFrame,
    metrics: dict[str, float],
    refs: dict[str, DatasetRef],
    work: str,
) -> ModelRef:
    """Log params, input, model and metrics in one run; return the model's ref."""
    import mlflow
    import mlflow.sklearn

    from mlsteps.backends.mlflow import pandas_dataset, wrap

    tags = {**ctx.tags(), "mlsteps.step_type": "train", WORK_TAG: work}
    if dataset.content_hash:
        tags["mlsteps.dataset.content_hash"] = dataset.content_hash
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=ctx.run_key.step, tags=tags) as run:
            mlflow.log_params(_flat_params(config, prepared))
            source = pandas_dataset(
                df,
                source=dataset.uri,
                targets=config.target,
                name=dataset.uri.rsplit("/", 1)[-1],
                content_hash=dataset.content_hash,
            )
            mlflow.log_input(
                source, context="training", tags={"mlsteps.content_hash": dataset.content_hash or ""}
            )
            model_ref = _log_model(config, prepared, model, X_train, run.info.run_id)
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()}, model_id=model_ref.model_id)
            result = StepResult(
                outputs={"model": model_ref, **refs}, metrics=metrics, message="trained"
            ).to_dict()
            mlflow.log_dict(result, RESULT_ARTIFACT)
            mlflow.set_tag(COMPLETE_TAG, "true")
    except MlstepsError:
        raise
    except Exception as exc:
        raise wrap(exc, "logging the trained model to MLflow failed") from exc
    return model_ref


def _log_model(
    config: TrainConfig, prepared: _Prepared, model: Any, X_train: pd.DataFrame, run_id: str
) -> ModelRef:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = X_train.head(5)
    signature = infer_signature(example, model.predict(example))
    trusted: list[str] | None = None
    if config.serialization_format == "skops":
        skops_io = require("skops.io")

        try:
            # The model was built in this process, so the types it holds are ours to trust;
            # MLflow records the list in MLmodel and passes it to skops when loading.
            trusted = list(skops_io.get_untrusted_types(data=skops_io.dumps(model)))
        except Exception as exc:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "train.config.serialization_format",
                        f"skops cannot serialise this model ({exc}); set serialization_format: cloudpickle",
                    )
                ]
            ) from exc
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        serialization_format=config.serialization_format,
        skops_trusted_types=trusted,
        pip_requirements=_pip_requirements(model, config),
    )
    metadata: dict[str, Any] = {
        "task": prepared.task,
        "target": config.target,
        "features": prepared.features,
        "estimator": config.estimator or f"custom_train:{config.custom_train}",
        "seed": config.seed,
    }
    if prepared.task == "classification" and hasattr(model, "classes_"):
        metadata["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    return ModelRef(
        uri=info.model_uri,
        content_hash=_model_hash(model),
        flavour="sklearn",
        run_id=run_id,
        model_id=info.model_id,
        metadata=metadata,
    )


def _finished_attempt(
    ctx: RunContext, client: MlflowClient, experiment_id: str, work: str
) -> StepResult | None:
    """The result of an earlier attempt of this step run, if one finished completely.

    Complete means: the run did the same work (config and input dataset), ended
    FINISHED with the completion tag, its model is
    READY, and the split files it wrote are still there with the same content.
    """
    from mlsteps.backends.mlflow import wrap
    from mlsteps.storage import is_local, to_local_path

    key = ctx.run_key.idempotency_key.replace("'", "\\'")
    query = (
        f"tags.\"mlsteps.run_key\" = '{key}' and tags.\"{COMPLETE_TAG}\" = 'true' "
        f"and tags.\"{WORK_TAG}\" = '{work}' and attributes.status = 'FINISHED'"
    )
    try:
        runs = client.search_runs(
            [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]
        )
    except Exception as exc:
        raise wrap(exc, "searching MLflow for an earlier attempt of this step failed") from exc
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    for run in runs:
        try:
            raw = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{RESULT_ARTIFACT}")
            result = StepResult.from_dict(raw)
            model_ref = result.outputs["model"]
            assert isinstance(model_ref, ModelRef) and model_ref.model_id
            if str(client.get_logged_model(model_ref.model_id).status) not in (
                "READY",
                "LoggedModelStatus.READY",
            ):
                continue
        except (MlflowException, OSError, KeyError, ValueError, AssertionError) as exc:
            # An unreadable or partial record means "train again".
            ctx.logger.warning("train: earlier run %s is not reusable: %s", run.info.run_id, exc)
            continue
        intact = all(
            is_local(ref.uri)
            and to_local_path(ref.uri).exists()
            and hash_file(to_local_path(ref.uri)) == ref.content_hash
            for name, ref in result.outputs.items()
            if name != "model"
        )
        if intact:
            return result
    return None
