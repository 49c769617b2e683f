"""SIGKILL the ``register`` step at seeded random points, then retry with the same run key.

One real model (logistic regression on iris) is logged once into the embedded
SQLite MLflow; each seed registers it under its own name with ``promote: true``.
Attempts 1-4 of a seed's run key are killed after seeded delays in [0, the step's
measured duration); attempt 5 runs to the end. After every kill and at the end:
never more than one version per run key; at the end exactly one, carrying both
aliases, its model card and no promotion lock left behind; lineage holds one
succeeded record and the killed attempts' ``started`` markers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _rel_support import Attempt, ForkServer, check_lineage, kill_delays, result_of, run_chain

KILLS_PER_SEED = 4
MIN_KILLS = 20


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An artifact root whose SQLite MLflow holds one logged model; its ref and a passed evaluation."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlsteps.backends.mlflow import configure, ensure_experiment
    from mlsteps.context import RunKey, build_context
    from mlsteps.refs import ModelRef, ReportRef, dump_ref

    base = tmp_path_factory.mktemp("register-crash")
    ctx = build_context(
        RunKey(run_id="setup", step="train", pipeline="crash"), artifact_root=str(base / "art")
    )
    experiment_id = ensure_experiment(ctx, configure(ctx))
    X, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression(max_iter=300).fit(X, y),
            name="model",
            input_example=X.head(2),
            pip_requirements=["scikit-learn"],
        )
    report = base / "evaluation.json"
    summary = {"metrics": {"accuracy": 0.97}, "thresholds": {"accuracy": ">= 0.9"}, "failing": []}
    report.write_text(json.dumps({"passed": True, **summary}))
    model = ModelRef(uri=info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    evaluation = ReportRef(uri=str(report), passed=True, summary=summary)
    return {
        "base": base,
        "root": base / "art",
        "tracking_uri": ctx.tracking_uri,
        "inputs": {"model": dump_ref(model), "evaluation": dump_ref(evaluation)},
    }


def _client(logged: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=logged["tracking_uri"], registry_uri=logged["tracking_uri"])


def _versions(client: Any, name: str) -> list[Any]:
    return list(client.search_model_versions(f"name='{name}'"))


@pytest.mark.slow
def test_sigkill_register_at_random_points_then_retry(
    forkserver: ForkServer, logged: dict[str, Any], tmp_path: Path
) -> None:
    client = _client(logged)

    def kwargs(seed: int | str) -> dict[str, Any]:
        return {
            "step_type": "register",
            "step_id": "register",
            "root": str(logged["root"]),
            "base_dir": str(logged["base"]),
            "run_id": f"reg-{seed}",
            "config": {"name": f"crash-{seed}", "promote": True},
            "inputs": logged["inputs"],
        }

    # An uninterrupted run measures how long the step takes here and now.
    calibration = run_chain(forkserver, seed=-1, kwargs=kwargs("calib"), delays=[], workdir=tmp_path)
    duration = calibration.attempts[0].elapsed_s

    kills = 0
    chains = []
    for seed in range(12):
        name = f"crash-{seed}"
        key = f"local/crash/reg-{seed}/register"

        def after_kill(attempt: Attempt, name: str = name, key: str = key) -> None:
            found = _versions(client, name)
            assert len(found) <= 1, [v.version for v in found]
            assert all(v.tags.get("mlsteps.run_key") == key for v in found)

        chain = run_chain(
            forkserver,
            seed=seed,
            kwargs=kwargs(seed),
            delays=kill_delays(seed, KILLS_PER_SEED, duration),
            workdir=tmp_path,
            after_kill=after_kill,
        )
        chains.append(chain)
        kills += chain.kills

        found = _versions(client, name)
        assert [str(v.version) for v in found] == ["1"]
        mv = client.get_model_version(name, "1")
        assert mv.tags["mlsteps.run_key"] == key
        assert mv.tags["mlsteps.attempt"] == str(chain.attempts[-1].attempt)
        assert "mlsteps.model_card" in mv.tags
        aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        assert aliases == {"challenger": "1", "champion": "1"}
        assert client.search_registered_models(f"name='{name}.mlsteps-lock'") == []
        result = result_of(tmp_path, chain)
        assert result["outputs"]["model_version"]["aliases"] == ["challenger", "champion"]
        records = check_lineage(logged["root"], chain, step="register")
        done = [r for r in records if r.status == "succeeded"]
        assert {r.outputs["model_version"].ref["version"] for r in done} == {"1"}
        if kills >= MIN_KILLS and seed >= 5:
            break

    assert kills >= MIN_KILLS, [c.attempts for c in chains]
    print(f"register: {kills} kills over {len(chains)} run keys, {len(chains)} retries survived")


def test_promotion_lock_left_by_a_killed_attempt(logged: dict[str, Any], tmp_path: Path) -> None:
    """A lock left by a killed attempt: its own retry takes it over at once, an expired one is broken,
    a live one held by another pipeline makes the promotion wait, then fail naming the lock."""
    import time

    from mlsteps.context import RunKey, build_context
    from mlsteps.errors import BackendError
    from mlsteps.step import execute_step
    from mlsteps.steps.register import LOCK_EXPIRES_TAG, LOCK_OWNER_TAG, RegisterStep

    client = _client(logged)

    def register(run_id: str, name: str, **config: Any) -> Any:
        ctx = build_context(
            RunKey(run_id=run_id, step="register", pipeline="crash", attempt=2),
            artifact_root=str(logged["root"]),
            base_dir=logged["base"],
        )
        return execute_step(RegisterStep, ctx, {"name": name, "promote": True, **config}, logged["inputs"])

    def plant(name: str, owner: str, expires_in_s: float) -> None:
        tags = {LOCK_OWNER_TAG: f"{owner}#dead", LOCK_EXPIRES_TAG: str(time.time() + expires_in_s)}
        client.create_registered_model(f"{name}.mlsteps-lock", tags=tags)

    plant("lock-own", "local/crash/lock-own/register", 3600)
    assert register("lock-own", "lock-own").outputs["model_version"].aliases == ["challenger", "champion"]
    plant("lock-expired", "local/crash/someone-else/register", -1)
    assert "champion" in register("lock-exp", "lock-expired").outputs["model_version"].aliases
    plant("lock-held", "local/crash/someone-else/register", 3600)
    with pytest.raises(BackendError, match=r"promotion lock 'lock-held\.mlsteps-lock' is held by"):
        register("lock-held", "lock-held", promotion_lock_s=1)
    for name in ("lock-own", "lock-expired"):
        assert client.search_registered_models(f"name='{name}.mlsteps-lock'") == []
