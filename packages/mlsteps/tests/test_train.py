"""The train step with real scikit-learn and an embedded SQLite MLflow.

Tests in this module share one artifact root (and so one MLflow database,
whose creation takes several seconds) and keep apart by using distinct run ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _helpers_train import (
    diabetes_ref,
    make_ctx,
    mlflow_runs_with_key,
    penguins_frame,
    penguins_ref,
    penguins_train_config,
    write_frame,
)

from mlsteps.errors import ConfigError, DataError
from mlsteps.refs import DatasetRef, ModelRef
from mlsteps.step import execute_step
from mlsteps.steps.train import TrainStep


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def penguins(root: Path) -> dict[str, Any]:
    return penguins_ref(root)


@pytest.fixture(scope="module")
def trained(root: Path, penguins: dict[str, Any]) -> Any:
    """One random forest trained on penguins, shared by the read-only assertions."""
    ctx = make_ctx(root, run_id="base")
    return ctx, execute_step(TrainStep, ctx, penguins_train_config(), {"dataset": penguins})


def test_train_logs_the_model_and_writes_both_splits(trained: Any, penguins: dict[str, Any]) -> None:
    import mlflow
    import mlflow.sklearn
    import pandas as pd

    ctx, result = trained
    model = result.outputs["model"]
    assert isinstance(model, ModelRef)
    assert model.uri.startswith("models:/m-")
    assert model.model_id and model.uri == f"models:/{model.model_id}"
    assert model.flavour == "sklearn"
    assert model.content_hash and model.content_hash.startswith("sha256:")
    assert model.metadata["task"] == "classification"
    assert model.metadata["target"] == "species"
    assert model.metadata["features"] == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert model.metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]

    train_ref, test_ref = result.outputs["train_data"], result.outputs["test_data"]
    assert isinstance(train_ref, DatasetRef) and isinstance(test_ref, DatasetRef)
    assert Path(train_ref.uri).parent == ctx.step_dir()
    train_df, test_df = pd.read_parquet(train_ref.uri), pd.read_parquet(test_ref.uri)
    assert (len(train_df), len(test_df)) == (258, 86)
    assert set(train_df["penguin_id"]).isdisjoint(test_df["penguin_id"])
    # Stratified: each species' share of the test set is within one row of its overall share.
    overall = pd.concat([train_df, test_df])["species"].value_counts(normalize=True)
    for species, count in test_df["species"].value_counts().items():
        assert abs(count - overall[species] * len(test_df)) <= 1

    assert result.metrics["accuracy"] > 0.9
    assert result.metrics["f1_macro"] > 0.9
    assert result.metrics["roc_auc"] > 0.95

    client = mlflow.MlflowClient(tracking_uri=ctx.tracking_uri)
    run = client.get_run(model.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train"
    assert run.data.tags["mlsteps.run_key"] == "local/t/base/train"
    assert run.data.tags["mlsteps.dataset.content_hash"] == penguins["content_hash"]
    assert run.data.params["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert run.data.params["params.n_estimators"] == "25"
    assert run.data.params["seed"] == "42"
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics["accuracy"])
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source == f'{{"uri": "{penguins["uri"]}"}}'
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert input_tags["mlsteps.content_hash"] == penguins["content_hash"]
    # The dataset is described without MLflow's row-by-row pass: the digest is the content
    # hash's start, and the schema the one MLflow infers from the whole frame.
    assert dataset_input.dataset.digest == penguins["content_hash"].removeprefix("sha256:")[:8]
    import mlflow.data

    frame = pd.read_parquet(penguins["uri"])
    expected = mlflow.data.from_pandas(frame, targets="species").schema
    assert dataset_input.dataset.schema == json.dumps({"mlflow_colspec": expected.to_dict()})

    loaded = mlflow.sklearn.load_model(model.uri)
    predictions = loaded.predict(test_df[model.metadata["features"]])
    assert (predictions == test_df["species"]).mean() == pytest.approx(result.metrics["accuracy"])
    assert (
        mlflow.models.get_model_info(model.uri).signature.inputs.input_names() == model.metadata["features"]
    )


def test_dataset_schema_is_what_mlflow_infers_from_every_row() -> None:
    """Distinct values give MLflow's own schema, for each kind of column, missing values included."""
    import mlflow.data

    from mlsteps.backends.mlflow import dataset_schema

    n = 60
    frame = pd.DataFrame(
        {
            "ints": range(n),
            "floats": [float(i) if i % 7 else None for i in range(n)],
            "text": ["a", "b", None] * (n // 3),
            "flags": [True, False] * (n // 2),
            "when": pd.date_range("2024-01-01", periods=n, tz="UTC"),
            "naive_when": pd.Series(pd.date_range("2024-01-01", periods=n)).where(lambda s: s.dt.day != 3),
            "category": pd.Categorical(["x", "y", "z"] * (n // 3)),
            "string": pd.array(["p", None, "q"] * (n // 3), dtype="string"),
            "lists": [[1, 2], [3]] * (n // 2),
            "empty": [None] * n,
            "bytes": [b"a", b"b"] * (n // 2),
        }
    )
    ours = dataset_schema(frame)
    theirs = mlflow.data.from_pandas(frame).schema
    assert ours is not None and theirs is not None
    assert ours.to_dict() == theirs.to_dict()
    # A column mixing numbers and text has no MLflow schema; neither does ours.
    frame["mixed"] = [1, "x", 2.5] * (n // 3)
    assert mlflow.data.from_pandas(frame).schema is None
    assert dataset_schema(frame) is None


def test_same_data_config_and_seed_give_identical_metrics(
    trained: Any, root: Path, penguins: dict[str, Any]
) -> None:
    _, first = trained
    again = execute_step(
        TrainStep, make_ctx(root, run_id="again"), penguins_train_config(), {"dataset": penguins}
    )
    assert again.outputs["model"].run_id != first.outputs["model"].run_id
    assert again.metrics == first.metrics
    assert again.outputs["model"].content_hash == first.outputs["model"].content_hash
    assert again.outputs["test_data"].content_hash == first.outputs["test_data"].content_hash

    other_seed = execute_step(
        TrainStep, make_ctx(root, run_id="seed7"), penguins_train_config(seed=7), {"dataset": penguins}
    )
    assert other_seed.outputs["test_data"].content_hash != first.outputs["test_data"].content_hash
    assert other_seed.outputs["model"].content_hash != first.outputs["model"].content_hash


def test_a_retry_reuses_the_finished_run(trained: Any, root: Path, penguins: dict[str, Any]) -> None:
    ctx, first = trained
    retry_ctx = make_ctx(root, run_id="base", attempt=2)
    retried = execute_step(TrainStep, retry_ctx, penguins_train_config(), {"dataset": penguins})
    assert retried.outputs == first.outputs
    assert retried.metrics == first.metrics
    assert len(mlflow_runs_with_key(ctx)) == 1


def test_a_retry_with_changed_config_trains_again(root: Path, penguins: dict[str, Any]) -> None:
    ctx = make_ctx(root, run_id="changed")
    first = execute_step(TrainStep, ctx, penguins_train_config(), {"dataset": penguins})
    retry_ctx = make_ctx(root, run_id="changed", attempt=2)
    retried = execute_step(TrainStep, retry_ctx, penguins_train_config(seed=5), {"dataset": penguins})
    assert retried.outputs["model"].run_id != first.outputs["model"].run_id
    assert len(mlflow_runs_with_key(ctx)) == 2


def test_a_retry_trains_again_when_the_splits_are_gone(root: Path, penguins: dict[str, Any]) -> None:
    ctx = make_ctx(root, run_id="lost")
    first = execute_step(TrainStep, ctx, penguins_train_config(), {"dataset": penguins})
    Path(first.outputs["test_data"].uri).unlink()
    retried = execute_step(
        TrainStep, make_ctx(root, run_id="lost", attempt=2), penguins_train_config(), {"dataset": penguins}
    )
    assert retried.outputs["model"].run_id != first.outputs["model"].run_id
    assert Path(retried.outputs["test_data"].uri).exists()
    assert retried.metrics == first.metrics
    assert len(mlflow_runs_with_key(ctx)) == 2


def test_time_split_holds_out_the_latest_rows(root: Path) -> None:
    import numpy as np
    import pandas as pd

    # The package's rows are grouped by species; shuffle the event times so the
    # latest rows are a mix of species (seeded, so the test is deterministic).
    df = penguins_frame()
    df["event_timestamp"] = np.random.default_rng(0).permutation(df["event_timestamp"].to_numpy())
    penguins = write_frame(df, root / "data" / "shuffled_times.parquet")

    config = penguins_train_config(
        estimator="sklearn.linear_model.LogisticRegression",
        params={"max_iter": 1000, "C": 0.5},
        exclude=["penguin_id"],
        split={"test_fraction": 0.2, "time_column": "event_timestamp"},
    )
    result = execute_step(TrainStep, make_ctx(root, run_id="time"), config, {"dataset": penguins})
    train_df = pd.read_parquet(result.outputs["train_data"].uri)
    test_df = pd.read_parquet(result.outputs["test_data"].uri)
    assert len(test_df) == 69
    assert test_df["event_timestamp"].min() > train_df["event_timestamp"].max()
    assert "event_timestamp" not in result.outputs["model"].metadata["features"]
    assert result.metrics["accuracy"] > 0.85


def test_regression_on_bundled_diabetes_data(root: Path) -> None:
    config = {
        "estimator": "sklearn.linear_model.Ridge",
        "params": {"alpha": 0.1},
        "target": "target",
        "split": {"test_fraction": 0.25},
        "seed": 1,
    }
    result = execute_step(
        TrainStep, make_ctx(root, run_id="diabetes"), config, {"dataset": diabetes_ref(root)}
    )
    assert result.outputs["model"].metadata["task"] == "regression"
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    assert result.metrics["r2"] > 0.3
    assert 30 < result.metrics["rmse"] < 80
    assert result.metrics["mae"] < result.metrics["rmse"]


def test_nested_estimator_params_are_built_and_seeded(root: Path, penguins: dict[str, Any]) -> None:
    import mlflow.sklearn

    config = penguins_train_config(
        estimator="sklearn.ensemble.BaggingClassifier",
        params={
            "n_estimators": 5,
            "estimator": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 3}},
        },
        seed=3,
    )
    result = execute_step(TrainStep, make_ctx(root, run_id="nested"), config, {"dataset": penguins})
    model = mlflow.sklearn.load_model(result.outputs["model"].uri)
    bagging = model.named_steps["estimator"]
    assert bagging.estimator.max_depth == 3
    assert bagging.random_state == 3
    assert bagging.estimator.random_state == 3
    assert result.metrics["accuracy"] > 0.85


def test_custom_train_function(root: Path, penguins: dict[str, Any]) -> None:
    config = penguins_train_config(estimator=None, custom_train="_helpers_train.train_knn", params={"k": 3})
    result = execute_step(TrainStep, make_ctx(root, run_id="custom"), config, {"dataset": penguins})
    assert result.outputs["model"].metadata["estimator"] == "custom_train:_helpers_train.train_knn"
    assert result.metrics["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        ("sklearn.ensemble.NoSuchForest", "has no attribute 'NoSuchForest'"),
        ("nosuchpackage.Model", "cannot import module 'nosuchpackage'"),
        ("collections.OrderedDict", "has no fit or predict method"),
        ("RandomForest", "expected an import path"),
    ],
)
def test_a_bad_estimator_path_is_a_config_error(
    root: Path, penguins: dict[str, Any], estimator: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=r"train\.config\.estimator") as info:
        execute_step(
            TrainStep,
            make_ctx(root, run_id="bad"),
            penguins_train_config(estimator=estimator),
            {"dataset": penguins},
        )
    assert expected in str(info.value)


def test_unknown_estimator_params_are_config_errors(root: Path, penguins: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="unexpected keyword argument 'n_trees'"):
        execute_step(
            TrainStep,
            make_ctx(root, run_id="badparam"),
            penguins_train_config(params={"n_trees": 3}),
            {"dataset": penguins},
        )
    with pytest.raises(ConfigError, match=r"train.config.params: .*n_estimators"):
        execute_step(
            TrainStep,
            make_ctx(root, run_id="badvalue"),
            penguins_train_config(params={"n_estimators": -1}),
            {"dataset": penguins},
        )


def test_a_missing_target_is_a_data_error(root: Path, penguins: dict[str, Any]) -> None:
    with pytest.raises(DataError, match=r"penguins\.parquet: target column 'kind' not found"):
        execute_step(
            TrainStep,
            make_ctx(root, run_id="notarget"),
            penguins_train_config(target="kind"),
            {"dataset": penguins},
        )


def test_a_single_class_target_is_a_data_error(root: Path) -> None:
    df = penguins_frame()
    ref = write_frame(df[df["species"] == "Adelie"], root / "data" / "adelie.parquet")
    with pytest.raises(
        DataError, match=r"adelie\.parquet: target column 'species' has 1 class\(es\) \['Adelie'\]"
    ):
        execute_step(TrainStep, make_ctx(root, run_id="oneclass"), penguins_train_config(), {"dataset": ref})


def test_missing_target_values_fail_unless_dropped(root: Path) -> None:
    df = penguins_frame()
    df.loc[[3, 10], "species"] = None
    ref = write_frame(df, root / "data" / "holes.parquet")
    with pytest.raises(DataError, match=r"holes\.parquet: target column 'species' has 2 missing value"):
        execute_step(TrainStep, make_ctx(root, run_id="holes"), penguins_train_config(), {"dataset": ref})
    result = execute_step(
        TrainStep,
        make_ctx(root, run_id="holes2"),
        penguins_train_config(drop_na_target=True),
        {"dataset": ref},
    )
    assert result.outputs["train_data"].rows + result.outputs["test_data"].rows == 342


def test_infinite_regression_target_is_a_data_error(root: Path) -> None:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True).frame
    df.loc[5, "target"] = float("inf")
    ref = write_frame(df, root / "data" / "inf.parquet")
    config = {"estimator": "sklearn.linear_model.Ridge", "target": "target"}
    with pytest.raises(DataError, match=r"inf\.parquet: target column 'target' has 1 infinite value"):
        execute_step(TrainStep, make_ctx(root, run_id="inf"), config, {"dataset": ref})


def test_a_datetime_feature_needs_excluding(root: Path, penguins: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="feature column 'event_timestamp' has dtype datetime64"):
        execute_step(
            TrainStep,
            make_ctx(root, run_id="dt"),
            penguins_train_config(exclude=["penguin_id"]),
            {"dataset": penguins},
        )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"custom_train": "_helpers_train.train_knn"}, "set exactly one of 'estimator' and 'custom_train'"),
        ({"split": {"time_column": "event_timestamp", "stratify": True}}, "stratify cannot be combined"),
        ({"split": {"test_fraction": 1.5}}, "train.config.split.test_fraction"),
        ({"exclude": ["species"]}, "the target 'species' is listed in 'exclude'"),
        ({"task": "clustering"}, "train.config.task"),
        ({"learning_rate": 0.1}, "train.config.learning_rate: unknown key"),
    ],
)
def test_invalid_config_is_reported_before_running(
    overrides: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        TrainStep.parse_config(penguins_train_config(**overrides))
    assert expected in str(info.value)


def test_preprocessing_false_shorthand() -> None:
    config = TrainStep.parse_config(penguins_train_config(preprocessing=False))
    assert config.preprocessing.enabled is False


def test_time_split_warns_about_classes_only_seen_after_it(root: Path, penguins: dict[str, Any]) -> None:
    # In the package's row order the last rows are all Chinstrap penguins.
    config = penguins_train_config(
        split={"test_fraction": 0.2, "time_column": "penguin_id"}, exclude=["event_timestamp"]
    )
    with pytest.warns(
        UserWarning, match=r"classes \['Chinstrap'\] of 'species' occur only after the time split"
    ):
        execute_step(TrainStep, make_ctx(root, run_id="unseen"), config, {"dataset": penguins})
