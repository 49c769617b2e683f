"""The penguins pipeline (validate, featurise, train, evaluate, register) hand-written.

The baseline of the step-overhead benchmark: what a careful team writes without
mlsteps, calling GX Core, Feast, scikit-learn and MLflow directly with the same
data and settings as ``examples/penguins/pipeline.yaml`` (same expectations,
feature service, estimator, split, metrics, champion comparison and aliases).
It does not write reports, lineage, hashes or a model card: that is mlsteps'
extra work, and part of what the benchmark measures.

    python penguins_direct.py PROJECT_DIR [--until STAGE]   # PROJECT_DIR holds data/, feature_repo/
    python penguins_direct.py PROJECT_DIR --only STAGE      # one stage, from the files the one before left

``--only`` is the data-scale benchmark's per-step mode: each stage in its own process, as
an orchestrator runs them. featurise then writes its training set to
``PROJECT_DIR/.direct/features.parquet`` (as mlsteps writes its own) and train reads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def validate(df, max_rows: int):  # type: ignore[no-untyped-def]
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    batch = (
        context.data_sources.add_pandas("pandas")
        .add_dataframe_asset("penguins")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="penguins"))
    for exp in [
        gxe.ExpectColumnToExist(column="species"),
        gxe.ExpectColumnValuesToBeInSet(column="species", value_set=["Adelie", "Chinstrap", "Gentoo"]),
        gxe.ExpectColumnValuesToBeUnique(column="penguin_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="event_timestamp"),
        gxe.ExpectColumnValuesToNotBeNull(column="bill_length_mm", mostly=0.98),
        gxe.ExpectColumnValuesToBeBetween(column="bill_length_mm", min_value=25, max_value=70, mostly=0.99),
        gxe.ExpectColumnValuesToBeBetween(column="body_mass_g", min_value=2000, max_value=7000, mostly=0.99),
        gxe.ExpectTableRowCountToBeBetween(min_value=300, max_value=max_rows),
    ]:
        suite.add_expectation(exp)
    warn = gx.ExpectationSuite(name="warnings")
    warn.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="sex", mostly=0.99))
    warn = context.suites.add(warn)
    for s in (suite, warn):
        result = context.validation_definitions.add(
            gx.ValidationDefinition(name=s.name, data=batch, suite=s)
        ).run(batch_parameters={"dataframe": df})
        if s is suite and not result.success:
            sys.exit("validation failed")


def featurise(repo: Path, df):  # type: ignore[no-untyped-def]
    import feast
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    store = feast.FeatureStore(repo_path=str(repo))
    # What `feast apply` does: import the repo's modules from inside it.
    cwd = os.getcwd()
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    try:
        apply_total_with_repo_instance(store, store.project, store.registry, parse_repo(repo), False)
    finally:
        os.chdir(cwd)
    entities = df[["penguin_id", "event_timestamp", "species"]]
    features = store.get_feature_service("penguin_features")
    return store.get_historical_features(entity_df=entities, features=features).to_df()


def train(df, n_estimators: int = 200):  # type: ignore[no-untyped-def]
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = df.drop(columns=["species", "penguin_id", "event_timestamp"])
    y = df["species"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=42)
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]
    model = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        (
                            "numeric",
                            Pipeline(
                                [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                            ),
                            numeric,
                        ),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ]
                ),
            ),
            ("estimator", RandomForestClassifier(n_estimators=n_estimators, max_depth=6, random_state=42)),
        ]
    )
    mlflow.set_experiment("penguins")
    with mlflow.start_run() as run:
        mlflow.log_params({"n_estimators": n_estimators, "max_depth": 6, "seed": 42})
        mlflow.log_input(mlflow.data.from_pandas(df, name="penguins"), context="training")
        model.fit(X_train, y_train)
        example = X_train.head(5)
        import skops.io  # MLflow's default sklearn format: the types of a model we built are ours to trust

        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            skops_trusted_types=list(skops.io.get_untrusted_types(data=skops.io.dumps(model))),
            # Stated, as mlsteps does: MLflow's inference loads the model in a subprocess (~15 s).
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
        mlflow.log_metric("train_accuracy", float((model.predict(X_train) == y_train).mean()))
    return info.model_uri, run.info.run_id, X_test, y_test


def evaluate(model_uri: str, run_id: str, X_test, y_test) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import accuracy_score, f1_score

    def score(uri: str) -> dict[str, float]:
        pred = mlflow.sklearn.load_model(uri).predict(X_test)
        return {"accuracy": accuracy_score(y_test, pred), "f1_macro": f1_score(y_test, pred, average="macro")}

    metrics = score(model_uri)
    if metrics["accuracy"] < 0.9 or metrics["f1_macro"] < 0.9:
        sys.exit(f"evaluation failed: {metrics}")
    try:
        mlflow.MlflowClient().get_model_version_by_alias("penguins", "champion")
        champion = score("models:/penguins@champion")
    except MlflowException:
        champion = None
    metrics["beats_champion"] = float(champion is None or metrics["f1_macro"] >= champion["f1_macro"])
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items()})
    return metrics


def register(model_uri: str, metrics: dict[str, float]) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, "penguins").version
    client.set_registered_model_alias("penguins", "challenger", version)
    if metrics["beats_champion"]:
        client.set_registered_model_alias("penguins", "champion", version)
    return str(version)


STAGES = ("validate", "featurise", "train", "register")


def main() -> None:
    import argparse

    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("project", type=Path)
    stages = parser.add_mutually_exclusive_group()
    stages.add_argument("--until", choices=STAGES, default="register", help="last stage to run")
    stages.add_argument(
        "--only", choices=STAGES[:3], help="run one stage, from the files the stage before it left"
    )
    parser.add_argument("--max-rows", type=int, default=100000, help="row-count expectation's maximum")
    parser.add_argument(
        "--n-estimators", type=int, default=200, help="the forest's size (the example's: 200)"
    )
    args = parser.parse_args()
    project = args.project.resolve()
    store = project / ".direct"
    store.mkdir(exist_ok=True)
    # Imported only by the stages that use MLflow, as mlsteps' steps do.
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    features_file = store / "features.parquet"
    if args.only == "train":
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        train(pd.read_parquet(features_file), args.n_estimators)
        return
    df = pd.read_parquet(project / "data" / "penguins.parquet")
    if args.only == "featurise":
        featurise(project / "feature_repo", df).to_parquet(features_file, index=False)
        return
    validate(df, args.max_rows)
    if args.only == "validate" or args.until == "validate":
        return
    features = featurise(project / "feature_repo", df)
    if args.until == "featurise":
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    model_uri, run_id, X_test, y_test = train(features, args.n_estimators)
    if args.until == "train":
        return
    metrics = evaluate(model_uri, run_id, X_test, y_test)
    print("registered version", register(model_uri, metrics), metrics)


if __name__ == "__main__":
    main()
