"""The ``mlsteps`` command line, run as users and pods run it: as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOY_SPEC, write_spec

MLSTEPS = shutil.which("mlsteps", path=str(Path(sys.executable).parent)) or "mlsteps"


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLSTEPS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_version(toy_plugin_env: dict[str, str]) -> None:
    from mlsteps import __version__

    out = cli(toy_plugin_env, "--version")
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_entry_point_steps_are_discovered(toy_plugin_env: dict[str, str]) -> None:
    out = cli(toy_plugin_env, "steps")
    assert out.returncode == 0, out.stderr
    for name in ("toy_source", "toy_sum", "train", "validate"):
        assert name in out.stdout


def test_run_prints_summary_then_reuses_cache(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, TOY_SPEC)
    first = cli(toy_plugin_env, "run", str(spec))
    assert first.returncode == 0, first.stderr
    assert "toy - run" in first.stdout and "sum=45" in first.stdout
    second = cli(toy_plugin_env, "run", str(spec), "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["ok"] is True
    assert [s["status"] for s in summary["steps"]] == ["cached", "cached"]
    third = cli(toy_plugin_env, "run", str(spec), "--no-cache", "--json")
    assert [s["status"] for s in json.loads(third.stdout)["steps"]] == ["succeeded", "succeeded"]


def test_failed_gate_exits_1(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, TOY_SPEC.replace("min_sum: 40", "min_sum: 999"))
    out = cli(toy_plugin_env, "run", str(spec))
    assert out.returncode == 1
    assert "gate failed" in out.stdout
    assert "sum 45.0 < min_sum 999" in out.stdout


def test_usage_error_exits_2(toy_plugin_env: dict[str, str]) -> None:
    out = cli(toy_plugin_env, "run")
    assert out.returncode == 2
    assert "Missing argument" in out.stderr


def test_step_command_runs_one_step_from_json(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    art = tmp_path / "art"
    first = cli(
        toy_plugin_env,
        "step",
        "toy_source",
        "--config",
        '{"count": 4}',
        "--artifact-root",
        str(art),
        "--run-id",
        "pod-1",
        "--step-id",
        "source",
        "--orchestrator",
        "airflow",
        "--attempt",
        "2",
    )
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["status"] == "succeeded"
    dataset = result["outputs"]["dataset"]
    assert dataset["rows"] == 4 and dataset["kind"] == "dataset"
    ref_file = tmp_path / "ref.json"
    ref_file.write_text(json.dumps(dataset))
    out_file = tmp_path / "result.json"
    second = cli(
        toy_plugin_env,
        "step",
        "toy_sum",
        "--input",
        f"dataset=@{ref_file}",
        "--artifact-root",
        str(art),
        "--run-id",
        "pod-1",
        "--output",
        str(out_file),
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(out_file.read_text())["metrics"] == {"sum": 6.0}
    records = sorted((art / "lineage" / "pod-1").glob("*.json"))
    assert len(records) == 2
    rec = json.loads(records[0].read_text())
    assert rec["run_key"]["orchestrator"] == "airflow" and rec["run_key"]["attempt"] == 2


def test_step_command_takes_a_step_from_a_spec(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    """What a pod runs: the spec's config and artifact root, refs from the orchestrator."""
    spec = write_spec(tmp_path, TOY_SPEC)
    common = ["--spec", str(spec), "--run-id", "k8s-1", "--pipeline", "toy", "--orchestrator", "airflow"]
    first = cli(toy_plugin_env, "step", "source", *common)
    assert first.returncode == 0, first.stderr
    dataset = json.loads(first.stdout)["outputs"]["dataset"]
    assert dataset["rows"] == 10  # count from the spec's config
    second = cli(toy_plugin_env, "step", "total", *common, "--input", f"dataset={json.dumps(dataset)}")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["metrics"]["sum"] == 45.0
    # The spec's artifact root (relative to the spec), not the working directory's .mlsteps.
    records = sorted((tmp_path / "art" / "lineage" / "k8s-1").glob("*.json"))
    assert len(records) == 2
    override = cli(toy_plugin_env, "step", "source", *common, "--config", '{"count": 3}')
    assert json.loads(override.stdout)["outputs"]["dataset"]["rows"] == 3
    missing = cli(toy_plugin_env, "step", "nope", "--spec", str(spec))
    assert missing.returncode == 2
    assert "spec has no step 'nope'" in missing.stderr


def test_step_command_gate_failure_exits_1_with_report(
    tmp_path: Path, toy_plugin_env: dict[str, str]
) -> None:
    art = tmp_path / "art"
    src = json.loads(
        cli(
            toy_plugin_env, "step", "toy_source", "--config", '{"count": 2}', "--artifact-root", str(art)
        ).stdout
    )
    out = cli(
        toy_plugin_env,
        "step",
        "toy_sum",
        "--config",
        '{"min_sum": 10}',
        "--input",
        "dataset=" + json.dumps(src["outputs"]["dataset"]),
        "--artifact-root",
        str(art),
    )
    assert out.returncode == 1
    payload = json.loads(out.stdout)
    assert payload["status"] == "gate_failed"
    assert payload["outputs"]["report"]["passed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["step", "nope"], "unknown step 'nope'"),
        (["step", "toy_source", "--config", "{bad json"], "--config: expected JSON"),
        (["step", "toy_source", "--config", '{"count": "x"}'], "toy_source.config.count"),
        (["step", "toy_sum", "--config", "{}"], "inputs.dataset: required input"),
        (
            ["step", "toy_sum", "--input", 'dataset={"kind": "model", "uri": "m"}'],
            "expected a dataset ref, got a model",
        ),
        (["step", "toy_sum", "--input", "dataset"], "expected NAME=REF_JSON"),
    ],
)
def test_step_command_config_errors_exit_2(
    toy_plugin_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    out = cli(toy_plugin_env, *args, "--artifact-root", str(tmp_path / "art"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr


def test_lineage_shows_the_run(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, TOY_SPEC)
    assert cli(toy_plugin_env, "run", str(spec), "--run-id", "r-42").returncode == 0
    out = cli(toy_plugin_env, "lineage", "--spec", str(spec))
    assert out.returncode == 0, out.stderr
    assert "run r-42 (toy)" in out.stdout
    assert "source (toy_source v1)" in out.stdout and "total (toy_sum v1)" in out.stdout
    as_json = json.loads(cli(toy_plugin_env, "lineage", "--root", str(tmp_path / "art"), "--json").stdout)
    assert [r["run_key"]["step"] for r in as_json] == ["source", "total"]


def test_lineage_without_records_exits_2(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    out = cli(toy_plugin_env, "lineage", "--root", str(tmp_path / "empty"))
    assert out.returncode == 2
    assert "no lineage records" in out.stderr
