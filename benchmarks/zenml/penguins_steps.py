"""The six-step penguins pipeline as mlsteps step plugins (the ZenML version's counterpart).

Exposed to ``mlsteps run`` as an entry-point plugin (``mlsteps.testing.write_step_plugin``,
this directory on ``PYTHONPATH``); the work is ``penguins_work``, as on the ZenML side.
Datasets pass between steps as Parquet files (ZenML's pandas materializer writes Parquet too),
the model as a pickle.
"""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING, Any, ClassVar

import penguins_work as work

from mlsteps.errors import GateFailure
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, ModelRef, ModelVersionRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import to_local_path

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mlsteps.context import RunContext

#: Entry-point targets for ``write_step_plugin``.
STEPS = {
    "pn_load": "penguins_steps:Load",
    "pn_validate": "penguins_steps:Validate",
    "pn_features": "penguins_steps:Features",
    "pn_train": "penguins_steps:Train",
    "pn_evaluate": "penguins_steps:Evaluate",
    "pn_register": "penguins_steps:Register",
}


def _write(df: pd.DataFrame, path: Path) -> DatasetRef:
    df.to_parquet(path, index=False)
    columns = {str(c): str(t) for c, t in df.dtypes.items()}
    return DatasetRef(uri=str(path), content_hash=hash_file(path), rows=len(df), columns=columns)


def _read(ref: BaseRef) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(to_local_path(ref.uri))


def _model(ref: BaseRef) -> Any:
    return pickle.loads(to_local_path(ref.uri).read_bytes())


class LoadConfig(StepConfig):
    data: str


class NoConfig(StepConfig):
    pass


class RegisterConfig(StepConfig):
    registry: str
    name: str = "penguins"


class Load(Step[LoadConfig]):
    name = "pn_load"
    config_model = LoadConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: LoadConfig, inputs: dict[str, BaseRef]) -> StepResult:
        df = work.load(ctx.resolve_path(config.data))
        return StepResult(outputs={"dataset": _write(df, ctx.step_dir() / "data.parquet")})


class Validate(Step[NoConfig]):
    name = "pn_validate"
    config_model = NoConfig
    gate = True
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset", "report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        failures = work.validate(_read(inputs["dataset"]))
        path = ctx.step_dir() / "report.json"
        path.write_text(json.dumps({"failures": failures}))
        report = ReportRef(uri=str(path), content_hash=hash_file(path), passed=not failures)
        if failures:
            raise GateFailure("pn_validate", failures, report=report)
        return StepResult(outputs={"dataset": inputs["dataset"], "report": report}, passed=True)


class Features(Step[NoConfig]):
    name = "pn_features"
    config_model = NoConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        df = work.features(_read(inputs["dataset"]))
        return StepResult(outputs={"dataset": _write(df, ctx.step_dir() / "features.parquet")})


class Train(Step[NoConfig]):
    name = "pn_train"
    config_model = NoConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"model": "model", "test_data": "dataset"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        model, test_df = work.train(_read(inputs["dataset"]))
        path = ctx.step_dir() / "model.pkl"
        path.write_bytes(pickle.dumps(model))
        test = _write(test_df, ctx.step_dir() / "test.parquet")
        return StepResult(
            outputs={"model": ModelRef(uri=str(path), content_hash=hash_file(path)), "test_data": test}
        )


class Evaluate(Step[NoConfig]):
    name = "pn_evaluate"
    config_model = NoConfig
    gate = True
    inputs: ClassVar[dict[str, InputSpec]] = {"model": InputSpec("model"), "dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        metrics = work.evaluate(_model(inputs["model"]), _read(inputs["dataset"]))
        path = ctx.step_dir() / "metrics.json"
        path.write_text(json.dumps(metrics))
        ok = work.passed(metrics)
        report = ReportRef(uri=str(path), content_hash=hash_file(path), passed=ok, summary=metrics)
        if not ok:
            raise GateFailure("pn_evaluate", [f"below thresholds: {metrics}"], report=report)
        return StepResult(outputs={"report": report}, metrics=metrics, passed=True)


class Register(Step[RegisterConfig]):
    name = "pn_register"
    config_model = RegisterConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"model": InputSpec("model"), "evaluation": InputSpec("report")}
    outputs: ClassVar[dict[str, RefKind]] = {"model_version": "model_version"}

    def run(self, ctx: RunContext, config: RegisterConfig, inputs: dict[str, BaseRef]) -> StepResult:
        metrics = inputs["evaluation"].summary if isinstance(inputs["evaluation"], ReportRef) else {}
        uri = work.register(_model(inputs["model"]), metrics, ctx.resolve_path(config.registry), config.name)
        version = uri.rsplit("/v", 1)[1].removesuffix(".pkl")
        ref = ModelVersionRef(
            uri=uri, content_hash=hash_file(to_local_path(uri)), name=config.name, version=version
        )
        return StepResult(outputs={"model_version": ref})
