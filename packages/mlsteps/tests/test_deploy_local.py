"""The ``deploy`` step on the ``local`` target: real MLflow scoring servers, real HTTP predictions.

Models are small real ones logged once per module into the embedded SQLite
registry: logistic regressions on iris (v1, v2), a pyfunc whose ``predict``
raises (v3), a version whose evaluation failed (v4) and one with corrupted
artifacts (v5). Every server start costs seconds, so the blue/green story runs
as one scenario and the other tests start no server or at most one. A module
fixture stops everything and asserts that no server process is left.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlsteps.backends.mlflow import configure, ensure_experiment
from mlsteps.context import RunContext, RunKey, build_context
from mlsteps.deploy.base import StateFile
from mlsteps.deploy.local import LocalServer, is_running, predict, serving_example, stop_all
from mlsteps.errors import BackendError, ConfigError, GateFailure
from mlsteps.hashing import hash_path
from mlsteps.lineage import LineageRecorder
from mlsteps.refs import DeploymentRef, ModelRef, ModelVersionRef, ReportRef
from mlsteps.step import StepResult, execute_step
from mlsteps.steps.deploy import DeployStep
from mlsteps.steps.register import EVALUATION_TAG, RegisterStep

NAME = "iris"

BROKEN_MODEL = """
import mlflow.pyfunc
from mlflow.models import set_model


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this model is broken on purpose")


set_model(Broken())
"""


def server_processes(root: Path) -> list[Any]:
    """Running processes whose working directory is under ``root``: the local servers started there."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cwd", "status"]):
        cwd = proc.info.get("cwd")
        if cwd and str(cwd).startswith(str(root)) and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


class Registry:
    """The module's artifact root and registered versions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.art = root / "art"
        self.versions: dict[str, ModelVersionRef] = {}

    def ctx(self, run_id: str = "r1", *, attempt: int = 1, step: str = "deploy") -> RunContext:
        return build_context(
            RunKey(run_id=run_id, step=step, pipeline="t", attempt=attempt),
            artifact_root=str(self.art),
            base_dir=self.root,
        )


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def _report(reg: Registry, *, passed: bool) -> ReportRef:
    summary = {
        "metrics": {"accuracy": 0.97 if passed else 0.4},
        "failing": [] if passed else ["accuracy 0.4 < 0.9"],
    }
    path = reg.root / f"evaluation-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"passed": passed, **summary}))
    return ReportRef(uri=str(path), passed=passed, summary=summary, content_hash=hash_path(path))


def _log(reg: Registry, kind: str, *, c: float = 1.0) -> Any:
    """Log a model (``sklearn`` or ``broken``) with an input example; its ModelInfo and run id."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    ctx = reg.ctx("models", step="train")
    experiment_id = ensure_experiment(ctx, configure(ctx))
    X, y = _iris()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        if kind == "sklearn":
            info = mlflow.sklearn.log_model(
                LogisticRegression(max_iter=500, C=c).fit(X, y),
                name="model",
                input_example=X.head(2),
                pip_requirements=["scikit-learn"],
            )
        else:
            code = reg.root / "broken_model.py"
            code.write_text(textwrap.dedent(BROKEN_MODEL))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                input_example=X.head(2),
                signature=infer_signature(X.head(2), np.array([0, 0])),
                pip_requirements=["mlflow"],
            )
    return info, run.info.run_id


def _register_direct(reg: Registry, info: Any, run_id: str, evaluation: ReportRef) -> str:
    """Register a version as ``register`` would tag it, without its gate (to plant bad versions)."""
    client = configure(reg.ctx("models"))
    mv = client.create_model_version(
        NAME,
        source=info.model_uri,
        run_id=run_id,
        tags={EVALUATION_TAG: evaluation.uri},
        model_id=info.model_id,
    )
    return str(mv.version)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """v1 through the real register step; v2-v5 planted directly. Stops every server at the end."""
    reg = Registry(tmp_path_factory.mktemp("deploy"))
    info, run_id = _log(reg, "sklearn", c=1.0)
    result = execute_step(
        RegisterStep,
        reg.ctx("models", step="register"),
        {"name": NAME, "aliases": ["challenger"]},
        {
            "model": ModelRef(uri=info.model_uri, run_id=run_id, model_id=info.model_id),
            "evaluation": _report(reg, passed=True),
        },
    )
    v1 = result.outputs["model_version"]
    assert isinstance(v1, ModelVersionRef)
    assert v1.version == "1"
    reg.versions["1"] = v1
    for version, kind, passed in (("2", "sklearn", True), ("3", "broken", True), ("4", "sklearn", False)):
        info, run_id = _log(reg, kind, c=0.05)
        assert _register_direct(reg, info, run_id, _report(reg, passed=passed)) == version
    info, run_id = _log(reg, "sklearn", c=2.0)
    assert _register_direct(reg, info, run_id, _report(reg, passed=True)) == "5"
    # v5's artifacts are corrupted after registration: the server cannot load the model.
    client = configure(reg.ctx("models"))
    local = Path(client.get_model_version_download_uri(NAME, "5").removeprefix("file://"))
    for pickled in [*local.glob("model.skops"), *local.glob("model.pkl")]:
        pickled.write_bytes(b"not a model")
    yield reg
    stop_all(reg.ctx("teardown"), reason="test teardown")
    assert server_processes(reg.art) == []


def deploy(
    reg: Registry, run_id: str, *, attempt: int = 1, inputs: dict[str, Any] | None = None, **config: Any
) -> DeploymentRef:
    config = {"name": "iris-svc", **config}
    result: StepResult = execute_step(DeployStep, reg.ctx(run_id, attempt=attempt), config, inputs or {})
    ref = result.outputs["deployment"]
    assert isinstance(ref, DeploymentRef)
    return ref


def live_server(reg: Registry, deployment: str = "iris-svc") -> LocalServer:
    state = StateFile(reg.ctx("check"), deployment).load()
    assert state is not None
    return LocalServer.model_validate(state.runtime["live"])


def example_prediction(reg: Registry, ref: DeploymentRef) -> Any:
    server = live_server(reg, ref.metadata["deployment"])
    payload = serving_example(server.model_path)
    assert payload is not None
    assert ref.endpoint is not None
    return predict(ref.endpoint, payload)


# --------------------------------------------------------------------------- the blue/green story


def test_blue_green_deploys_auto_rollback_and_rollback_by_hand(reg: Registry) -> None:
    # v1 from the register step's output.
    first = deploy(reg, "d1", inputs={"model_version": reg.versions["1"]})
    assert first.status == "healthy"
    assert first.traffic == {"1": 100}
    assert first.endpoint is not None
    assert first.endpoint.startswith("http://127.0.0.1:")
    assert example_prediction(reg, first) == [0, 0]
    server1 = live_server(reg)
    assert is_running(server1)
    print(f"\nv1 healthy after {first.metadata['startup_s']:.1f} s")

    # A retry of the same run key finds v1 live and healthy: no second server.
    retry = deploy(reg, "d1", attempt=2, inputs={"model_version": reg.versions["1"]})
    assert retry.metadata["reused"] is True
    assert live_server(reg).pid == server1.pid
    assert len(StateFile(reg.ctx("check"), "iris-svc").load().history) == 1  # type: ignore[union-attr]

    # v2 by URI: starts beside v1, the endpoint switches, then v1 is stopped.
    second = deploy(reg, "d2", model="models:/iris/2", reason="retrained")
    assert second.status == "healthy"
    assert second.traffic == {"2": 100}
    assert second.endpoint != first.endpoint
    assert second.metadata["previous_version"] == "1"
    assert example_prediction(reg, second) == [0, 0]
    server2 = live_server(reg)
    assert not is_running(server1)
    print(f"v2 healthy after {second.metadata['startup_s']:.1f} s")

    # v3 answers /ping but its predictions fail: stopped, v2 keeps serving, the run fails.
    with pytest.raises(BackendError, match="did not become healthy") as failed:
        deploy(reg, "d3", model="models:/iris/3")
    assert "broken on purpose" in str(failed.value)
    assert "v2 keeps serving" in str(failed.value)
    state = StateFile(reg.ctx("check"), "iris-svc").load()
    assert state is not None
    assert state.live_version == "2"
    assert state.endpoint == second.endpoint
    assert state.history[-1].action == "auto_rollback"
    assert state.history[-1].status == "rolled_back"
    assert state.history[-1].version == "3"
    assert state.runtime["candidate"] is None
    assert is_running(server2)
    assert example_prediction(reg, second) == [0, 0]
    assert [p.pid for p in server_processes(reg.art)] == [server2.pid]

    # Rollback by hand: the previous healthy version (v1, not the failed v3) serves again.
    back = deploy(reg, "rb", action="rollback", reason="v2 misbehaves in prod", actor="alice")
    assert back.status == "healthy"
    assert back.traffic == {"1": 100}
    assert back.metadata["previous_version"] == "2"
    assert example_prediction(reg, back) == [0, 0]
    assert not is_running(server2)
    state = StateFile(reg.ctx("check"), "iris-svc").load()
    assert state is not None
    assert [(e.action, e.version, e.status) for e in state.history] == [
        ("deploy", "1", "healthy"),
        ("deploy", "2", "healthy"),
        ("auto_rollback", "3", "rolled_back"),
        ("rollback", "1", "healthy"),
    ]
    assert (state.history[-1].actor, state.history[-1].reason) == ("alice", "v2 misbehaves in prod")

    # Retrying the rollback (same run key) must not roll back again (to v2).
    again = deploy(reg, "rb", attempt=2, action="rollback")
    assert again.traffic == {"1": 100}
    assert again.metadata["reused"] is True

    # Each deploy and rollback is a lineage record: who, which version, when, why.
    records = [r for r in LineageRecorder(reg.ctx("check").store).records() if r.step_type == "deploy"]
    by_run = {(r.run_key.run_id, r.run_key.attempt): r for r in records}
    assert by_run[("d3", 1)].status == "failed"
    assert "did not become healthy" in (by_run[("d3", 1)].error or "")
    rollback = by_run[("rb", 1)]
    assert rollback.status == "succeeded"
    assert (rollback.config["action"], rollback.config["actor"], rollback.config["reason"]) == (
        "rollback",
        "alice",
        "v2 misbehaves in prod",
    )
    assert rollback.outputs["deployment"].ref["model_uri"] == "models:/iris/1"
    assert by_run[("d1", 1)].inputs["model_version"].ref["version"] == "1"

    # Stop: nothing serves, the history says so.
    stopped = deploy(reg, "stop", action="stop", reason="done")
    assert stopped.status == "stopped"
    assert server_processes(reg.art) == []
    state = StateFile(reg.ctx("check"), "iris-svc").load()
    assert state is not None
    assert (state.live_version, state.endpoint, state.history[-1].action) == (None, None, "stop")


# --------------------------------------------------------------------------- failures without a live version


def test_a_model_that_cannot_load_fails_and_leaves_nothing_running(reg: Registry) -> None:
    with pytest.raises(BackendError, match="exited during start-up") as failed:
        deploy(reg, "broken-load", name="iris-corrupt", model="models:/iris/5")
    assert "nothing serves this deployment" in str(failed.value)
    state = StateFile(reg.ctx("check"), "iris-corrupt").load()
    assert state is not None
    assert state.live_version is None
    assert [(e.action, e.status) for e in state.history] == [("deploy", "failed")]
    assert not [p for p in server_processes(reg.art) if "iris-corrupt" in str(p.info["cwd"])]


def test_a_port_taken_before_the_server_binds_it_is_given_up_for_another(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port is free when chosen and bound seconds later: another process can take it between."""
    import socket

    from mlsteps.deploy import local

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    chosen, real_free_port = iter([busy]), local.free_port
    monkeypatch.setattr(local, "free_port", lambda host: next(chosen, None) or real_free_port(host))
    try:
        ref = deploy(reg, "port-race", name="iris-port", model="models:/iris/1")
    finally:
        taken.close()
    assert ref.status == "healthy"
    assert ref.endpoint is not None and f":{busy}/" not in ref.endpoint
    assert example_prediction(reg, ref) == [0, 0]
    state = StateFile(reg.ctx("check"), "iris-port").load()
    assert state is not None
    assert [(e.action, e.status) for e in state.history] == [("deploy", "healthy")]
    logs = StateFile(reg.ctx("check"), "iris-port").directory() / "logs"
    assert len(list(logs.iterdir())) == 2, list(logs.iterdir())
    assert "address already in use" in (logs / f"v1-{busy}.log").read_text().lower()
    stopped = execute_step(DeployStep, reg.ctx("port-race-stop"), {"name": "iris-port", "action": "stop"}, {})
    assert stopped.outputs["deployment"].status == "stopped"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the evaluation gate


def test_a_version_whose_evaluation_failed_is_refused(reg: Registry) -> None:
    with pytest.raises(GateFailure) as refused:
        deploy(reg, "gate", name="iris-gate", model="models:/iris/4")
    message = str(refused.value)
    assert "did not pass" in message
    assert "accuracy 0.4 < 0.9" in message
    assert "force" in message
    assert StateFile(reg.ctx("check"), "iris-gate").load() is None


def test_force_passes_the_gate_and_dry_run_changes_nothing(reg: Registry) -> None:
    ref = deploy(reg, "forced", name="iris-gate", model="models:/iris/4", force=True, dry_run=True)
    assert ref.status == "pending"
    assert ref.metadata["dry_run"] is True
    assert "start iris v4" in ref.metadata["plan"]
    assert StateFile(reg.ctx("check"), "iris-gate").load() is None


def test_a_version_without_an_evaluation_is_refused(reg: Registry, tmp_path: Path) -> None:
    client = configure(reg.ctx("models"))
    client.delete_model_version_tag(NAME, "2", EVALUATION_TAG)
    try:
        with pytest.raises(GateFailure, match="has no evaluation"):
            deploy(reg, "untagged", name="iris-gate", model="models:/iris/2", dry_run=True)
    finally:
        client.set_model_version_tag(NAME, "2", EVALUATION_TAG, str(tmp_path / "gone.json"))
    with pytest.raises(GateFailure, match="cannot be read"):
        deploy(reg, "unreadable", name="iris-gate", model="models:/iris/2", dry_run=True)


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("config", "path", "words"),
    [
        ({"target": {"type": "docker"}}, "deploy.config.target", "'local', 'kubernetes', 'kserve'"),
        (
            {"strategy": {"kind": "canary"}},
            "deploy.config.strategy",
            "'canary' is not supported by the 'local'",
        ),
        ({"name": "Iris_Svc"}, "deploy.config.name", "lower-case"),
        ({"model": "runs:/abc/model"}, "deploy.config.model", "models:/NAME@ALIAS"),
        (
            {"target": {"type": "local", "workers": 0}},
            "deploy.config.target.local.workers",
            "greater than or equal",
        ),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        DeployStep.parse_config({"name": "iris-svc", **config})
    assert [p.path for p in err.value.problems] == [path]
    assert words in str(err.value)


def test_no_model_and_rolling_back_nothing_are_config_errors(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="no model to deploy") as err:
        deploy(reg, "nomodel", name="iris-none")
    assert err.value.problems[0].path == "deploy.config.model"
    with pytest.raises(ConfigError, match="no deployment 'iris-none'"):
        deploy(reg, "rb-none", name="iris-none", action="rollback")
    with pytest.raises(ConfigError, match="not both"):
        deploy(
            reg, "both", name="iris-none", model="models:/iris/1", inputs={"model_version": reg.versions["1"]}
        )


# --------------------------------------------------------------------------- CLI (no server starts)


def cli(reg: Registry, *args: str) -> Any:
    from click.testing import CliRunner

    from mlsteps.cli import main

    config = json.dumps({"name": "iris-cli"})
    return CliRunner().invoke(
        main, ["deploy", *args, "--config", config, "--artifact-root", str(reg.art)], catch_exceptions=False
    )


def test_cli_dry_run_render_and_errors(reg: Registry) -> None:
    out = cli(reg, "run", "--model", "models:/iris@challenger", "--dry-run", "--json")
    assert out.exit_code == 0, out.output
    assert "dry run: start iris v1 beside nothing" in out.output
    ref = json.loads(out.output[out.output.index("{") :])
    assert (ref["status"], ref["model_uri"]) == ("pending", "models:/iris/1")
    records = LineageRecorder(reg.ctx("check").store).records()
    assert any(r.step_type == "deploy" and r.run_key.orchestrator == "cli" for r in records)

    refused = cli(reg, "run", "--model", "models:/iris/4", "--dry-run")
    assert refused.exit_code == 1
    assert "did not pass" in refused.output

    rendered = cli(reg, "render", "--model", "models:/iris/1")
    assert rendered.exit_code == 0, rendered.output
    assert "no manifests to render" in rendered.output

    for command in ("status", "rollback"):
        missing = cli(reg, command)
        assert missing.exit_code == 2
        assert "iris-cli" in missing.output

    both = cli(reg, "predict")
    assert both.exit_code == 2
    assert "exactly one of --input-example and --data" in both.output


# --------------------------------------------------------------------------- crash leftovers and pid reuse


def test_a_crashed_attempts_candidate_is_stopped_but_a_reused_pid_is_not(reg: Registry) -> None:
    import subprocess

    from mlsteps.deploy.base import DeploymentState
    from mlsteps.deploy.local import process_start_id

    state_file = StateFile(reg.ctx("check"), "iris-orphan")
    directory = state_file.directory()
    # Stand-ins for server processes: an orphaned candidate (as a step killed during its health
    # check leaves it) and a live process whose pid the state records with another start time.
    orphan = subprocess.Popen(["sleep", "300"], cwd=directory, start_new_session=True)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:

        def server(proc: subprocess.Popen[bytes], start_id: str | None) -> dict[str, Any]:
            return LocalServer(
                version="1",
                model_uri="models:/iris/1",
                pid=proc.pid,
                start_id=start_id,
                host="127.0.0.1",
                port=1,
                model_path=str(directory),
                log=str(directory / "x.log"),
                config_hash="x",
                run_key="k",
            ).model_dump(mode="json")

        state_file.save(
            DeploymentState(
                deployment="iris-orphan",
                target="local",
                model_name=NAME,
                live_version="1",
                runtime={
                    "live": server(stranger, "not-its-start-time"),
                    "candidate": server(orphan, process_start_id(orphan.pid)),
                },
            )
        )

        ref = deploy(reg, "cleanup", name="iris-orphan", action="stop", reason="cleanup")

        assert ref.status == "stopped"
        assert orphan.wait(timeout=15) == -15  # SIGTERM
        assert stranger.poll() is None  # a recycled pid is never signalled
        state = state_file.load()
        assert state is not None
        assert (state.runtime["candidate"], state.runtime["live"]) == (None, None)
        assert state.history[-1].details["was_running"] is False
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- artifact integrity


def test_artifacts_changed_after_registration_are_refused_even_when_forced(reg: Registry) -> None:
    from mlsteps.deploy.base import ModelSpec
    from mlsteps.steps.deploy import verify_registered_artifacts
    from mlsteps.steps.register import ARTIFACT_HASH_TAG

    info, run_id = _log(reg, "sklearn", c=0.5)
    result = execute_step(
        RegisterStep,
        reg.ctx("tampered", step="register"),
        {"name": NAME},
        {
            "model": ModelRef(uri=info.model_uri, run_id=run_id, model_id=info.model_id),
            "evaluation": _report(reg, passed=True),
        },
    )
    version = result.outputs["model_version"].version  # type: ignore[attr-defined]
    client = configure(reg.ctx("models"))
    recorded = client.get_model_version(NAME, version).tags[ARTIFACT_HASH_TAG]
    local = Path(client.get_model_version_download_uri(NAME, version).removeprefix("file://"))
    spec = ModelSpec(
        name=NAME, version=version, model_uri=f"models:/{NAME}/{version}", artifact_hash=recorded
    )
    verify_registered_artifacts(reg.ctx("verify"), spec)  # intact: no error

    before = StateFile(reg.ctx("check"), "iris-svc").load()
    (local / "MLmodel").write_text((local / "MLmodel").read_text() + "\n# edited after registration\n")
    with pytest.raises(GateFailure, match="artifacts changed since registration"):
        verify_registered_artifacts(reg.ctx("verify"), spec)  # what Kubernetes/KServe deploys run first
    with pytest.raises(GateFailure, match="artifacts changed since registration"):
        deploy(reg, "tampered", model=f"models:/{NAME}/{version}", force=True)
    after = StateFile(reg.ctx("check"), "iris-svc").load()
    assert (after.live_version if after else None) == (before.live_version if before else None)
    # The tampered download was thrown away: no local copy to serve it from later.
    assert not (StateFile(reg.ctx("check"), "iris-svc").directory() / "models" / NAME / version).exists()
