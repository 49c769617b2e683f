"""Caching of the registry-dependent steps (evaluate against the champion, register).

Their results are reused by the local runner only while the model's registry
state is the one they depended on (evaluate) or left behind (register). Real
MLflow on SQLite; the fingerprint's SQLite fast path is checked against the
MLflow client's view of the same registry.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from mlsteps.backends import registry_state
from mlsteps.context import RunContext, RunKey
from mlsteps.data import describe_dataset
from mlsteps.refs import BaseRef, RefKind
from mlsteps.runner import LocalRunner, RunSummary
from mlsteps.spec import load_spec
from mlsteps.step import Step, StepConfig, StepResult
from mlsteps.testing import registered_steps


class FileConfig(StepConfig):
    path: str = Field(description="A parquet file.")


class FileSource(Step[FileConfig]):
    """Hands a parquet file on as a dataset ref."""

    name = "file_source"
    config_model = FileConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: FileConfig, inputs: dict[str, BaseRef]) -> StepResult:
        return StepResult(outputs={"dataset": describe_dataset(ctx.resolve_path(config.path))})


SPEC = """\
name: cached_registry
defaults:
  artifact_root: art
  mlflow: {experiment: cached_registry}
steps:
  source:
    uses: file_source
    config: {path: data/train.parquet}
  train:
    config:
      estimator: sklearn.linear_model.LogisticRegression
      target: y
      seed: 1
    inputs: {dataset: source.dataset}
  evaluate:
    config:
      thresholds: {accuracy: ">= 0.6"}
      champion: {model_name: cached}
    inputs: {model: train.model, dataset: train.test_data}
  register:
    config: {name: cached, promote: true}
    inputs: {model: train.model, evaluation: evaluate.report}
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": np.where(x.sum(axis=1) > 0, "p", "n")})
    (tmp_path / "data").mkdir()
    df.to_parquet(tmp_path / "data" / "train.parquet", index=False)
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    with registered_steps(FileSource):
        yield tmp_path


def run(root: Path, run_id: str) -> RunSummary:
    summary = LocalRunner(load_spec(root / "pipeline.yaml"), run_id=run_id).run()
    assert summary.ok, [(o.step_id, o.error) for o in summary.outcomes]
    return summary


def statuses(summary: RunSummary) -> dict[str, str]:
    return {o.step_id: o.status for o in summary.outcomes}


def ctx(root: Path) -> RunContext:
    spec = load_spec(root / "pipeline.yaml")
    return spec.context("register", RunKey(orchestrator="test", pipeline=spec.name, run_id="probe", step="x"))


def test_unchanged_rerun_reuses_evaluate_and_register_without_importing_mlflow(project: Path) -> None:
    first = run(project, "r1")
    assert statuses(first)["register"] == "succeeded"
    # Promotion moved the champion onto v1: evaluate's comparison is redone once, against it.
    second = run(project, "r2")
    assert statuses(second) == {
        "source": "cached",
        "train": "cached",
        "evaluate": "succeeded",
        "register": "succeeded",
    }
    third = run(project, "r3")
    assert set(statuses(third).values()) == {"cached"}
    version = third.outcome("register").result
    assert version is not None and version.outputs["model_version"].version == "1"  # type: ignore[attr-defined]

    # The state check before a hit reads SQLite directly: a fresh interpreter serving the
    # whole pipeline from the cache never imports MLflow.
    probe = (
        "import sys\n"
        "from mlsteps.testing import registered_steps\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_registry_cache import FileSource, run, statuses\n"
        "from pathlib import Path\n"
        "with registered_steps(FileSource):\n"
        f"    s = run(Path({str(project)!r}), 'r4')\n"
        "print(sorted(set(statuses(s).values())), 'mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['cached'] False"


def test_a_registry_change_invalidates_the_cached_results(project: Path) -> None:
    from mlflow import MlflowClient

    run(project, "r1")
    run(project, "r2")
    c = ctx(project)
    client = MlflowClient(tracking_uri=c.tracking_uri, registry_uri=c.registry_uri)
    # Someone else moves the champion away (here: removes it).
    client.delete_registered_model_alias("cached", "champion")
    after = run(project, "r3")
    assert statuses(after)["evaluate"] == "succeeded"
    assert statuses(after)["register"] == "succeeded"
    assert str(client.get_model_version_by_alias("cached", "champion").version) == "1"
    # r3's evaluate compared with no champion, and register then restored it: one settling
    # run compares with the restored champion again, after which everything is reused.
    assert statuses(run(project, "r4"))["evaluate"] == "succeeded"
    assert set(statuses(run(project, "r5")).values()) == {"cached"}

    # A tag written on the version by hand changes the model's fingerprint too.
    client.set_model_version_tag("cached", "1", "note", "edited by hand")
    assert statuses(run(project, "r6"))["register"] == "succeeded"
    # Exactly one version whatever happened.
    assert [str(v.version) for v in client.search_model_versions("name = 'cached'")] == ["1"]


def test_fingerprint_fast_path_agrees_with_the_mlflow_client(project: Path) -> None:
    from mlflow import MlflowClient

    c = ctx(project)
    assert registry_state.model_fingerprint(c, "cached") is not None  # no DB yet: "nothing registered"
    run(project, "r1")
    fast = registry_state.model_fingerprint(c, "cached")
    client = MlflowClient(tracking_uri=c.tracking_uri, registry_uri=c.registry_uri)
    slow_state = registry_state._client_state(client, "cached")
    path = registry_state._sqlite_path(c.registry_uri)
    assert path is not None
    assert registry_state._sqlite_state(path, "cached") == slow_state
    assert fast is not None and slow_state is not None and ["champion", "1"] in slow_state["aliases"]
    client.set_registered_model_alias("cached", "staging", "1")
    assert registry_state.model_fingerprint(c, "cached") != fast
    client.delete_model_version("cached", "1")
    assert registry_state._sqlite_state(path, "cached") == registry_state._client_state(client, "cached")
