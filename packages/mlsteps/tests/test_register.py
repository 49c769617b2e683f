"""Tests of the ``register`` step against a real MLflow Model Registry.

Each test logs a small real scikit-learn model (logistic regression on iris) with
``mlflow.sklearn.log_model`` and registers it. The unit tests use the embedded
SQLite store under ``tmp_path`` (a migrated, empty ``mlflow.db`` is copied in
to skip the schema migration); the integration tests run the same scenarios
against ``mlflow server`` on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlsteps.backends.mlflow import configure, ensure_experiment
from mlsteps.context import MlflowSettings, RunContext, RunKey
from mlsteps.errors import ConfigError, GateFailure
from mlsteps.hashing import hash_path
from mlsteps.refs import ModelRef, ModelVersionRef, ReportRef
from mlsteps.step import StepResult, execute_step
from mlsteps.steps.register import RegisterStep, render_model_card, summary_metrics

MakeCtx = Callable[..., RunContext]

SUMMARY: dict[str, Any] = {
    "metrics": {"accuracy": 0.9733, "f1_macro": 0.9731},
    "thresholds": {"accuracy": ">= 0.9", "f1_macro": ">= 0.9"},
    "champion": {"name": "iris", "version": None},
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite database; copying it is much faster than migrating."""
    root = tmp_path_factory.mktemp("template")
    ctx = RunContext(
        run_key=RunKey(run_id="template", step="register", pipeline="t"),
        artifact_root=str(root / "art"),
        base_dir=root,
    )
    configure(ctx).search_experiments()
    return Path(ctx.store.root) / "mlflow.db"


@pytest.fixture
def make_ctx(tmp_path: Path, template_db: Path) -> MakeCtx:
    """Contexts sharing one artifact root (and so one SQLite registry) under ``tmp_path``."""
    art = tmp_path / "art"
    art.mkdir(exist_ok=True)
    if not (art / "mlflow.db").exists():
        shutil.copyfile(template_db, art / "mlflow.db")

    def make(run_id: str = "r1", attempt: int = 1) -> RunContext:
        return RunContext(
            run_key=RunKey(run_id=run_id, step="register", pipeline="t", attempt=attempt),
            artifact_root=str(art),
            base_dir=tmp_path,
        )

    return make


def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def log_model(ctx: RunContext, tmp_path: Path, *, c: float = 1.0) -> ModelRef:
    """Log a real logistic regression on iris into ``ctx``'s experiment; its ModelRef, built by hand."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    client = configure(ctx)
    experiment_id = ensure_experiment(ctx, client)
    X, y = iris()
    estimator = LogisticRegression(max_iter=500, C=c).fit(X, y)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        # Explicit requirements skip MLflow's slow requirement inference.
        info = mlflow.sklearn.log_model(
            estimator, name="model", input_example=X.head(2), pip_requirements=["scikit-learn"]
        )
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=info.model_uri, dst_path=str(tmp_path / f"dl-{uuid.uuid4().hex[:6]}")
    )
    return ModelRef(
        uri=info.model_uri,
        run_id=run.info.run_id,
        model_id=info.model_id,
        content_hash=hash_path(local),
        metadata={
            "features": list(X.columns),
            "train_rows": len(X),
            "dataset_hash": "sha256:" + "ab" * 32,
        },
    )


def report(tmp_path: Path, *, passed: bool = True, summary: dict[str, Any] | None = None) -> ReportRef:
    summary = SUMMARY if summary is None else summary
    path = tmp_path / f"evaluation-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"passed": passed, **summary}))
    return ReportRef(uri=str(path), passed=passed, summary=summary, content_hash=hash_path(path))


def register(ctx: RunContext, model: ModelRef, evaluation: ReportRef, **config: Any) -> ModelVersionRef:
    result: StepResult = execute_step(
        RegisterStep, ctx, {"name": "iris", **config}, {"model": model, "evaluation": evaluation}
    )
    ref = result.outputs["model_version"]
    assert isinstance(ref, ModelVersionRef)
    return ref


def versions(ctx: RunContext, name: str) -> list[str]:
    client = configure(ctx)
    return sorted(str(mv.version) for mv in client.search_model_versions(f"name='{name}'"))


def aliases_of(ctx: RunContext, name: str, version: str) -> list[str]:
    return sorted(configure(ctx).get_model_version(name, version).aliases)


# --------------------------------------------------------------------------- scenarios
# Shared by the SQLite tests and the mlflow-server integration tests.


def check_registers_v1(make: MakeCtx, tmp_path: Path, name: str) -> None:
    ctx = make()
    model = log_model(ctx, tmp_path)
    evaluation = report(tmp_path)

    ref = register(ctx, model, evaluation, name=name)

    assert (ref.name, ref.version, ref.uri) == (name, "1", f"models:/{name}/1")
    assert ref.aliases == ["challenger"]
    assert ref.content_hash == model.content_hash
    assert ref.source_run_id == model.run_id
    client = configure(ctx)
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    assert "champion" not in client.get_registered_model(name).aliases
    mv = client.get_model_version(name, "1")
    assert mv.source == model.uri
    assert mv.run_id == model.run_id
    assert mv.tags["mlsteps.run_key"] == ctx.run_key.idempotency_key
    assert mv.tags["mlsteps.model_hash"] == model.content_hash
    assert mv.tags["mlsteps.evaluation"] == evaluation.uri
    assert mv.tags["mlsteps.lineage_record"] == ctx.record_id
    assert mv.tags["metric.accuracy"] == "0.9733"
    assert mv.current_stage == "None"  # aliases only, never stages


def check_retry_reuses_version(make: MakeCtx, tmp_path: Path, name: str) -> None:
    first = make(run_id="run-a", attempt=1)
    model = log_model(first, tmp_path)
    evaluation = report(tmp_path)
    v1 = register(first, model, evaluation, name=name)

    retry = make(run_id="run-a", attempt=2)
    again = register(retry, model, evaluation, name=name)

    assert again.version == v1.version == "1"
    assert again.metadata["reused"] is True
    assert versions(retry, name) == ["1"]
    tags = configure(retry).get_model_version(name, "1").tags
    assert tags["mlsteps.attempt"] == "2"
    assert tags["mlsteps.lineage_record"] == retry.record_id


def check_promotion_moves_champion(make: MakeCtx, tmp_path: Path, name: str) -> None:
    first = make(run_id="run-1")
    v1 = register(first, log_model(first, tmp_path), report(tmp_path), name=name, promote=True)
    assert v1.aliases == ["challenger", "champion"]

    second = make(run_id="run-2")
    v2 = register(second, log_model(second, tmp_path, c=0.5), report(tmp_path), name=name, promote=True)

    assert (v1.version, v2.version) == ("1", "2")
    assert v2.aliases == ["challenger", "champion"]
    assert aliases_of(second, name, "1") == []
    assert str(configure(second).get_model_version_by_alias(name, "champion").version) == "2"
    assert versions(second, name) == ["1", "2"]


# --------------------------------------------------------------------------- SQLite registry


def test_registers_version_1_with_challenger_alias(make_ctx: MakeCtx, tmp_path: Path) -> None:
    check_registers_v1(make_ctx, tmp_path, "iris")


def test_promote_sets_champion_and_the_champion_predicts(make_ctx: MakeCtx, tmp_path: Path) -> None:
    import mlflow.pyfunc

    ctx = make_ctx()
    model = log_model(ctx, tmp_path)

    ref = register(ctx, model, report(tmp_path), promote=True)

    assert ref.aliases == ["challenger", "champion"]
    assert str(configure(ctx).get_model_version_by_alias("iris", "champion").version) == ref.version
    X, y = iris()
    predictions = mlflow.pyfunc.load_model("models:/iris@champion").predict(X)
    assert len(predictions) == len(X)
    assert (predictions == y.to_numpy()).mean() > 0.9


def test_failed_evaluation_registers_nothing(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx()
    model = log_model(ctx, tmp_path)
    failed = report(tmp_path, passed=False, summary={**SUMMARY, "reasons": ["accuracy 0.52 is not >= 0.9"]})

    with pytest.raises(GateFailure) as err:
        register(ctx, model, failed, promote=True)

    assert err.value.step == "register"
    assert err.value.report is None
    assert err.value.reasons[0].startswith("evaluation did not pass: accuracy 0.52 is not >= 0.9")
    client = configure(ctx)
    assert client.search_registered_models() == []
    assert client.search_model_versions() == []


def test_retry_of_the_same_run_key_reuses_the_version(make_ctx: MakeCtx, tmp_path: Path) -> None:
    check_retry_reuses_version(make_ctx, tmp_path, "iris")


def test_retry_after_a_crash_between_creation_and_aliases(make_ctx: MakeCtx, tmp_path: Path) -> None:
    """Attempt 1 created the (tagged) version and died; attempt 2 finishes the job on that version."""
    crashed = make_ctx(run_id="run-c", attempt=1)
    model = log_model(crashed, tmp_path)
    client = configure(crashed)
    client.create_registered_model("iris")
    client.create_model_version(
        "iris", source=model.uri, run_id=model.run_id, tags=crashed.tags(), model_id=model.model_id
    )
    assert client.get_model_version("iris", "1").aliases == []

    ref = register(make_ctx(run_id="run-c", attempt=2), model, report(tmp_path), promote=True)

    assert ref.version == "1"
    assert ref.aliases == ["challenger", "champion"]
    assert versions(crashed, "iris") == ["1"]
    assert "mlsteps.model_card" in client.get_model_version("iris", "1").tags


def test_same_run_key_with_a_retrained_model_is_a_new_version(make_ctx: MakeCtx, tmp_path: Path) -> None:
    """A retry must not hand out a version of a different model just because the run key matches."""
    ctx = make_ctx(run_id="run-m")
    register(ctx, log_model(ctx, tmp_path), report(tmp_path))
    retrained = log_model(ctx, tmp_path, c=0.3)

    ref = register(make_ctx(run_id="run-m", attempt=2), retrained, report(tmp_path))

    assert ref.version == "2"
    assert configure(ctx).get_model_version("iris", "2").source == retrained.uri


def test_a_different_run_key_with_another_model_creates_version_2(make_ctx: MakeCtx, tmp_path: Path) -> None:
    first = make_ctx(run_id="run-1")
    register(first, log_model(first, tmp_path), report(tmp_path))

    ref = register(make_ctx(run_id="run-2"), log_model(first, tmp_path, c=0.3), report(tmp_path))

    assert ref.version == "2"
    assert versions(first, "iris") == ["1", "2"]
    # challenger moved to the newest version.
    assert aliases_of(first, "iris", "1") == []
    assert ref.aliases == ["challenger"]


def test_the_same_model_from_a_new_run_reuses_its_version(make_ctx: MakeCtx, tmp_path: Path) -> None:
    """A re-run whose training came from cache hands register the same logged model: no duplicate."""
    first = make_ctx(run_id="run-1")
    model = log_model(first, tmp_path)
    register(first, model, report(tmp_path))

    ref = register(make_ctx(run_id="run-2"), model, report(tmp_path))

    assert ref.version == "1"
    assert ref.metadata["reused"] is True
    assert versions(first, "iris") == ["1"]


def test_a_second_promotion_moves_champion(make_ctx: MakeCtx, tmp_path: Path) -> None:
    check_promotion_moves_champion(make_ctx, tmp_path, "iris")


def test_model_card_is_written_logged_and_tagged(make_ctx: MakeCtx, tmp_path: Path) -> None:
    import mlflow.artifacts

    ctx = make_ctx()
    model = log_model(ctx, tmp_path)
    evaluation = report(tmp_path)

    ref = register(ctx, model, evaluation, description="LR on iris", tags={"team": "ml"})

    card = ctx.step_dir() / "model_card.md"
    text = card.read_text()
    assert text.startswith("# Model card: iris v1")
    for expected in (
        "| accuracy | 0.9733 | >= 0.9 |",
        "| f1_macro | 0.9731 | >= 0.9 |",
        f"| source run | {model.run_id} |",
        "- `petal length (cm)`",
        "| train_rows | 150 |",
        "| dataset_hash | sha256:abab",
        "| mlflow | ",
        "| scikit-learn | ",
        "LR on iris",
        evaluation.uri,
    ):
        assert expected in text, expected
    client = configure(ctx)
    mv = client.get_model_version("iris", "1")
    assert mv.tags["mlsteps.model_card"] == f"runs:/{model.run_id}/model_card/model_card.md"
    assert mv.tags["team"] == "ml"
    assert mv.description == "LR on iris"
    assert [a.path for a in client.list_artifacts(model.run_id, "model_card")] == ["model_card/model_card.md"]
    logged = mlflow.artifacts.download_artifacts(
        mv.tags["mlsteps.model_card"], dst_path=str(tmp_path / "card")
    )
    assert Path(logged).read_text() == text
    assert ref.metadata["model_card"] == mv.tags["mlsteps.model_card"]


def test_logged_model_links_to_its_version(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx()
    model = log_model(ctx, tmp_path)
    register(ctx, model, report(tmp_path))
    register(make_ctx(attempt=2), model, report(tmp_path))

    assert model.model_id is not None
    links = json.loads(configure(ctx).get_logged_model(model.model_id).tags["mlflow.modelVersions"])
    assert links == [{"name": "iris", "version": "1"}]


@pytest.mark.parametrize(
    ("config", "path", "message"),
    [
        ({"name": "bad/name"}, "register.config.name", "letters, digits"),
        ({"name": "-leading-dash"}, "register.config.name", "starting with a letter or digit"),
        ({"name": "x" * 129}, "register.config.name", "1-128 characters"),
        ({"name": "iris", "aliases": ["latest"]}, "register.config.aliases", "reserved by MLflow"),
        ({"name": "iris", "aliases": ["v3"]}, "register.config.aliases", "reserved by MLflow"),
        ({"name": "iris", "aliases": ["has space"]}, "register.config.aliases", "may only contain"),
        ({"name": "iris", "aliases": ["champion"]}, "register.config", "set promote: true"),
        ({"name": "iris", "tags": {"mlsteps.run_key": "x"}}, "register.config.tags", "reserved prefix"),
        (
            {"name": "iris", "await_registration_s": -1},
            "register.config.await_registration_s",
            "greater than or equal to 0",
        ),
        ({"name": "iris", "stage": "Production"}, "register.config.stage", "unknown key"),
    ],
)
def test_invalid_config_is_a_config_error(config: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RegisterStep.parse_config(config)
    problems = [(p.path, p.message) for p in err.value.problems]
    assert any(p == path and message in m for p, m in problems), problems


def test_invalid_name_fails_before_touching_mlflow(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx()
    model = ModelRef(uri="models:/m-0123", run_id="r", model_id="m-0123")
    with pytest.raises(ConfigError, match=r"register\.config\.name"):
        execute_step(
            RegisterStep, ctx, {"name": "no:colons"}, {"model": model, "evaluation": report(tmp_path)}
        )
    assert configure(ctx).search_registered_models() == []


def test_missing_evaluation_input_is_a_config_error(make_ctx: MakeCtx) -> None:
    model = ModelRef(uri="models:/m-0123", run_id="r", model_id="m-0123")
    with pytest.raises(ConfigError, match=r"inputs\.evaluation: required input"):
        execute_step(RegisterStep, make_ctx(), {"name": "iris"}, {"model": model})


def test_evaluation_of_another_model_is_refused(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx()
    model = log_model(ctx, tmp_path)
    other = report(tmp_path, summary={**SUMMARY, "model_uri": "models:/m-someone-else"})
    with pytest.raises(GateFailure, match="is of model models:/m-someone-else"):
        register(ctx, model, other)
    assert configure(ctx).search_registered_models() == []


def test_summary_metrics_reads_nested_and_flat_summaries() -> None:
    assert summary_metrics({"metrics": {"a": 1, "b": {"value": 0.5}, "c": "x", "d": float("nan")}}) == {
        "a": 1.0,
        "b": 0.5,
    }
    assert summary_metrics({"accuracy": 0.9, "passed": True, "n": 3}) == {"accuracy": 0.9, "n": 3.0}


def test_model_card_without_metrics_or_run_says_so(tmp_path: Path) -> None:
    ctx = RunContext(
        run_key=RunKey(run_id="r", step="register"), artifact_root=str(tmp_path), base_dir=tmp_path
    )
    config = RegisterStep.parse_config({"name": "iris"})
    text = render_model_card(
        ctx,
        config,
        model=ModelRef(uri="models:/m-1"),
        evaluation=ReportRef(uri="/r.json", passed=True),
        version="4",
        source_run_id=None,
    )
    assert "# Model card: iris v4" in text
    assert "_no metrics in the evaluation summary_" in text
    assert "_not recorded on the model ref_" in text


# --------------------------------------------------------------------------- mlflow server on PostgreSQL


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``mlflow server`` on a fresh PostgreSQL database for the whole session."""
    from _mlflow_server import PostgresDriverMissing, running_mlflow_server

    try:
        with running_mlflow_server(workdir=tmp_path_factory.mktemp("mlflow-server")) as server:
            yield server
    except PostgresDriverMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def make_server_ctx(mlflow_server: Any, tmp_path: Path) -> MakeCtx:
    """Contexts on the shared server, in an experiment of their own, with a unique pipeline run id."""
    prefix = uuid.uuid4().hex[:8]
    settings = MlflowSettings(tracking_uri=mlflow_server.url, experiment=f"register-{prefix}")

    def make(run_id: str = "r1", attempt: int = 1) -> RunContext:
        return RunContext(
            run_key=RunKey(run_id=f"{prefix}-{run_id}", step="register", pipeline="t", attempt=attempt),
            artifact_root=str(tmp_path / "art"),
            base_dir=tmp_path,
            mlflow=settings,
        )

    return make


def server_name() -> str:
    return f"iris-{uuid.uuid4().hex[:8]}"


@pytest.mark.integration
def test_server_registers_version_1(make_server_ctx: MakeCtx, tmp_path: Path) -> None:
    check_registers_v1(make_server_ctx, tmp_path, server_name())


@pytest.mark.integration
def test_server_retry_reuses_the_version(make_server_ctx: MakeCtx, tmp_path: Path) -> None:
    check_retry_reuses_version(make_server_ctx, tmp_path, server_name())


@pytest.mark.integration
def test_server_second_promotion_moves_champion(make_server_ctx: MakeCtx, tmp_path: Path) -> None:
    check_promotion_moves_champion(make_server_ctx, tmp_path, server_name())


@pytest.mark.integration
def test_server_model_card_is_logged_through_the_artifact_proxy(
    make_server_ctx: MakeCtx, tmp_path: Path
) -> None:
    import mlflow.artifacts
    import mlflow.pyfunc

    name = server_name()
    ctx = make_server_ctx()
    model = log_model(ctx, tmp_path)
    ref = register(ctx, model, report(tmp_path), name=name, promote=True)

    card_uri = configure(ctx).get_model_version(name, ref.version).tags["mlsteps.model_card"]
    logged = mlflow.artifacts.download_artifacts(card_uri, dst_path=str(tmp_path / "card"))
    assert "| accuracy | 0.9733 | >= 0.9 |" in Path(logged).read_text()
    X, _ = iris()
    assert len(mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(X.head(5))) == 5
