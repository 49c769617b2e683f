"""The evaluate gate with real models, a SQLite MLflow tracking store and registry.

Models are trained once per module with the real train step; tests keep apart by
run id and registered model name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _helpers_train import diabetes_ref, make_ctx, penguins_ref, penguins_train_config

from mlsteps.errors import ConfigError, GateFailure
from mlsteps.refs import ReportRef, dump_ref
from mlsteps.step import execute_step
from mlsteps.steps.evaluate import NO_CHAMPION_NOTE, EvaluateStep
from mlsteps.steps.train import TrainStep


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def forest(root: Path) -> dict[str, Any]:
    """Outputs of a random forest trained on penguins (a good model)."""
    result = execute_step(
        TrainStep, make_ctx(root, run_id="forest"), penguins_train_config(), {"dataset": penguins_ref(root)}
    )
    return {k: dump_ref(v) for k, v in result.outputs.items()} | {"metrics": result.metrics}


@pytest.fixture(scope="module")
def dummy(root: Path) -> dict[str, Any]:
    """Outputs of a DummyClassifier (always the most frequent species): a deliberately weak model."""
    config = penguins_train_config(
        estimator="sklearn.dummy.DummyClassifier", params={"strategy": "most_frequent"}
    )
    result = execute_step(TrainStep, make_ctx(root, run_id="dummy"), config, {"dataset": penguins_ref(root)})
    return {k: dump_ref(v) for k, v in result.outputs.items()}


def evaluate(root: Path, run_id: str, model: dict[str, Any], config: dict[str, Any]) -> Any:
    inputs = {"model": model["model"], "dataset": model["test_data"]}
    return execute_step(EvaluateStep, make_ctx(root, run_id=run_id, step="evaluate"), config, inputs)


def register_champion(root: Path, model: dict[str, Any], name: str) -> str:
    """Register ``model`` as ``name`` and point the champion alias at it, as register would."""
    import mlflow

    from mlsteps.backends.mlflow import configure

    client = configure(make_ctx(root, run_id="setup"))
    version = mlflow.register_model(model["model"]["uri"], name)
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


SVG_NS = "{http://www.w3.org/2000/svg}"


def plot_svg(html_text: str) -> Any:
    """The report page's inline SVG plot, parsed (fails if it is not well-formed XML)."""
    import xml.etree.ElementTree as ET

    return ET.fromstring(html_text[html_text.index("<svg") : html_text.index("</svg>") + len("</svg>")])


def test_a_good_model_passes_its_thresholds(root: Path, forest: dict[str, Any]) -> None:
    import mlflow

    config = {
        "target": "species",
        "thresholds": {"accuracy": ">= 0.9", "f1_macro": ">= 0.9", "log_loss": "< 0.5"},
    }
    result = evaluate(root, "pass", forest, config)
    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert result.passed is True and report.passed is True
    # The same rows as train's held-out split, so the same numbers.
    for name in ("accuracy", "f1_macro", "roc_auc"):
        assert result.metrics[name] == pytest.approx(forest["metrics"][name])
    assert result.metrics["log_loss"] < 0.5
    assert [t["passed"] for t in report.summary["thresholds"]] == [True, True, True]
    assert report.summary["failing"] == []
    assert "champion" not in report.summary

    written = json.loads(Path(report.uri).read_text())
    assert written["passed"] is True and written["rows"] == 86
    assert written["plot"] == "confusion matrix"
    html_text = Path(report.html_uri or "").read_text()
    assert "<svg" in html_text and "Confusion matrix" in html_text and "PASSED" in html_text
    # The plot is well-formed SVG whose cells hold the confusion matrix: one per (true, predicted)
    # pair, counts summing to the rows evaluated, the diagonal the correct predictions.
    svg = plot_svg(html_text)
    cells = [r.find(f"{SVG_NS}title").text or "" for r in svg.iter(f"{SVG_NS}rect")]  # type: ignore[union-attr]
    counts = {c.rsplit(":", 1)[0]: int(c.rsplit(":", 1)[1]) for c in cells}
    species = ["Adelie", "Chinstrap", "Gentoo"]
    assert set(counts) == {f"true {t}, predicted {p}" for t in species for p in species}
    assert sum(counts.values()) == 86
    correct = sum(counts[f"true {s}, predicted {s}"] for s in species)
    assert correct / 86 == pytest.approx(result.metrics["accuracy"])

    client = mlflow.MlflowClient(tracking_uri=make_ctx(root).tracking_uri)
    run = client.get_run(forest["model"]["run_id"])
    assert run.data.metrics["eval_accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert run.data.tags["mlsteps.evaluation.passed"] == "true"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert artifacts == {"evaluation/evaluation.json", "evaluation/evaluation.html"}

    # Locations live in the ref, not in the report's content: the same model on the
    # same data gives a byte-identical report (hence the same hash on every runner).
    assert report.metadata["model"]["uri"] == forest["model"]["uri"]
    assert written["model"] == {"content_hash": forest["model"]["content_hash"]}
    again = evaluate(root, "pass-again", forest, config).outputs["report"]
    assert again.uri != report.uri and again.content_hash == report.content_hash


def test_a_failed_threshold_fails_the_gate_after_writing_the_report(
    root: Path, dummy: dict[str, Any]
) -> None:
    config = {"thresholds": {"accuracy": ">= 0.9", "f1_macro": ">= 0.1"}}
    with pytest.raises(GateFailure) as info:
        evaluate(root, "fail", dummy, config)
    exc = info.value
    # 38 of the 86 held-out penguins are Adelie, the most frequent species.
    assert exc.reasons == ["accuracy 0.4419 < threshold 0.9"]
    assert "gate 'evaluate' failed: accuracy 0.4419 < threshold 0.9" in str(exc)
    report = exc.report
    assert isinstance(report, ReportRef) and report.passed is False
    assert report.summary["failing"] == exc.reasons
    assert json.loads(Path(report.uri).read_text())["passed"] is False
    assert "FAILED" in Path(report.html_uri or "").read_text()


def test_a_weak_challenger_loses_to_the_registered_champion(
    root: Path, forest: dict[str, Any], dummy: dict[str, Any]
) -> None:
    version = register_champion(root, forest, "penguins-strong")
    config = {"thresholds": {"accuracy": ">= 0.3"}, "champion": {"model_name": "penguins-strong"}}
    with pytest.raises(GateFailure) as info:
        evaluate(root, "challenge", dummy, config)
    champion_f1 = forest["metrics"]["f1_macro"]
    assert info.value.reasons == [f"f1_macro 0.2043 does not beat champion {champion_f1:.4g} by >= 0"]
    summary = info.value.report.summary["champion"]
    assert summary["model"] == "penguins-strong@champion" and summary["version"] == version
    assert summary["metrics"]["f1_macro"] == pytest.approx(champion_f1)
    (comparison,) = summary["comparisons"]
    assert comparison["challenger"] == pytest.approx(0.2043, abs=1e-4)
    assert comparison["passed"] is False


def test_equal_models_pass_unless_an_improvement_is_required(root: Path, forest: dict[str, Any]) -> None:
    register_champion(root, forest, "penguins-same")
    result = evaluate(root, "tie", forest, {"champion": {"model_name": "penguins-same"}})
    assert result.passed is True
    assert result.outputs["report"].summary["champion"]["comparisons"][0]["passed"] is True

    config = {"champion": {"model_name": "penguins-same", "min_improvement": {"accuracy": 0.01}}}
    with pytest.raises(GateFailure) as info:
        evaluate(root, "tie2", forest, config)
    accuracy = f"{forest['metrics']['accuracy']:.4g}"
    assert info.value.reasons == [f"accuracy {accuracy} does not beat champion {accuracy} by >= 0.01"]


def test_without_a_champion_only_thresholds_count(root: Path, dummy: dict[str, Any]) -> None:
    config = {"thresholds": {"accuracy": ">= 0.3"}, "champion": {"model_name": "never-registered"}}
    result = evaluate(root, "first", dummy, config)
    assert result.passed is True
    assert result.outputs["report"].summary["champion"] == {"note": NO_CHAMPION_NOTE}
    assert NO_CHAMPION_NOTE in Path(result.outputs["report"].html_uri).read_text()


def test_slices_and_custom_metrics(root: Path, forest: dict[str, Any]) -> None:
    config = {
        "metrics": ["accuracy"],
        "custom_metrics": [{"name": "balanced_accuracy", "function": "_helpers_train.balanced_accuracy"}],
        "thresholds": {"balanced_accuracy": ">= 0.9"},
        "slice_by": "island",
    }
    result = evaluate(root, "slices", forest, config)
    assert set(result.metrics) == {"accuracy", "balanced_accuracy"}
    written = json.loads(Path(result.outputs["report"].uri).read_text())
    slices = written["slices"]["values"]
    assert set(slices) == {"Biscoe", "Dream", "Torgersen"}
    assert sum(s["rows"] for s in slices.values()) == 86
    assert all("accuracy" in s["metrics"] for s in slices.values())


def test_a_regression_model_on_diabetes(root: Path) -> None:
    train = execute_step(
        TrainStep,
        make_ctx(root, run_id="diabetes"),
        {"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": 0.1}, "target": "target", "seed": 1},
        {"dataset": diabetes_ref(root)},
    )
    model = {k: dump_ref(v) for k, v in train.outputs.items()}
    result = evaluate(root, "diabetes", model, {"thresholds": {"rmse": "<= 80", "r2": ">= 0.2"}})
    assert result.metrics["rmse"] == pytest.approx(train.metrics["rmse"])
    written = json.loads(Path(result.outputs["report"].uri).read_text())
    assert written["plot"] == "residuals"
    # Well-formed SVG with one dot per evaluated row (under the 2,000-point cap).
    svg = plot_svg(Path(result.outputs["report"].html_uri or "").read_text())
    dots = list(svg.iter(f"{SVG_NS}circle"))
    assert len(dots) == written["rows"] > 0

    with pytest.raises(GateFailure, match=r"rmse \d+\.?\d* > threshold 12.5"):
        evaluate(root, "diabetes2", model, {"thresholds": {"rmse": "<= 12.5"}})
    with pytest.raises(ConfigError, match=r"metric\(s\) \['accuracy'\] do not apply to regression"):
        evaluate(root, "diabetes3", model, {"thresholds": {"accuracy": ">= 0.5"}})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"thresholds": {"accuracy": "=> 0.9"}},
            "evaluate.config.thresholds.accuracy: Value error, expected a comparison",
        ),
        ({"thresholds": {"accuracy": "0.9"}}, "got '0.9'"),
        ({"thresholds": {"accuracy": ">= high"}}, "got '>= high'"),
        ({"thresholds": {"acuracy": ">= 0.9"}}, "unknown metric in thresholds.acuracy ('acuracy')"),
        ({"metrics": ["auc"]}, "evaluate.config.metrics.0"),
        ({"champion": {"model_name": "m", "primary_metric": "speed"}}, "champion.primary_metric ('speed')"),
        ({"custom_metrics": [{"name": "accuracy", "function": "x.y"}]}, "not built-in names: ['accuracy']"),
    ],
)
def test_bad_config_is_a_config_error(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        EvaluateStep.parse_config(config)
    assert expected in str(info.value)


def test_threshold_syntax_error_stops_before_running(root: Path, forest: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"expected a comparison such as '>= 0\.9'"):
        evaluate(root, "syntax", forest, {"thresholds": {"accuracy": ">== 0.9"}})
    assert not (Path(make_ctx(root).artifact_root) / "runs" / "syntax").exists()
