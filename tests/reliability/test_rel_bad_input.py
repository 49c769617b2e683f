"""Bad input, table-driven: every case is refused up front, named precisely, with nothing written.

Each case is a ``pipeline.yaml`` (or a ``mlsteps run``/``step`` argument) a user
could really write. For each: :func:`mlsteps.spec.load_spec` raises the documented
error type with a problem naming the file, the field and what was expected;
``mlsteps check`` and ``mlsteps run`` exit with code 2 and print the same; and the
artifact root stays absent (no lineage, no cache, no MLflow database, no registry,
no deployment).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsteps.cli import main
from mlsteps.errors import ConfigError
from mlsteps.spec import load_spec
from mlsteps.testing import registered_steps


@dataclass(frozen=True)
class Case:
    """A bad spec: the problem path expected (prefix match) and words of its message."""

    id: str
    spec: str
    path: str
    says: str
    line: bool = False


SOURCE = "  source:\n    uses: toy_source\n    config: {count: 3}\n"


def steps(body: str, *, name: str = "bad", defaults: str = "defaults:\n  artifact_root: art\n") -> str:
    return f"name: {name}\n{defaults}steps:\n{textwrap.indent(textwrap.dedent(body), '  ')}"


CASES = [
    # ---- YAML and structure
    Case("yaml-unclosed-flow", "name: x\nsteps: {source: {uses: toy_source\n", "", "invalid YAML", line=True),
    Case(
        "yaml-bad-indent",
        "name: x\nsteps:\n  source:\n    uses: toy_source\n   config: {}\n",
        "",
        "invalid YAML",
        line=True,
    ),
    Case("yaml-tab", "name: x\nsteps:\n\tsource: {}\n", "", "invalid YAML", line=True),
    Case("yaml-duplicate-anchor-alias", "name: x\nsteps: *missing\n", "", "invalid YAML", line=True),
    Case("top-level-list", "- name: x\n- steps: {}\n", "", "expected a mapping"),
    Case("empty-file", "", "", "expected a mapping"),
    Case(
        "python-object-tag", "name: !!python/object/apply:os.system ['true']\nsteps: {}\n", "", "invalid YAML"
    ),
    Case("unknown-top-level-key", steps(SOURCE) + "stepz: {}\n", "stepz", "unknown key"),
    Case("missing-name", "steps:\n" + SOURCE, "name", "required field is missing"),
    Case("missing-steps", "name: x\n", "steps", "required field is missing"),
    Case("empty-steps", "name: x\nsteps: {}\n", "steps", "at least one step"),
    Case("steps-is-a-list", "name: x\nsteps: [source]\n", "steps", "valid dictionary"),
    Case("name-wrong-type", "name: [a, b]\nsteps:\n" + SOURCE, "name", "valid string"),
    # ---- names: spaces, unicode, length, traversal
    Case("name-with-space", steps(SOURCE, name="'my pipeline'"), "name", "letters, digits and underscores"),
    Case("name-unicode", steps(SOURCE, name="pipéline"), "name", "letters, digits and underscores"),
    Case("name-emoji", steps(SOURCE, name="'pipe🚀'"), "name", "letters, digits and underscores"),
    Case("name-very-long", steps(SOURCE, name="p" * 500), "name", "at most 63 characters"),
    Case("name-traversal", steps(SOURCE, name="'../../etc/passwd'"), "name", "letters, digits"),
    Case(
        "step-id-dash",
        steps("bad-id:\n  uses: toy_source\n  config: {count: 1}\n"),
        "steps.bad-id",
        "invalid step id",
    ),
    Case(
        "step-id-unicode",
        steps("étape:\n  uses: toy_source\n  config: {count: 1}\n"),
        "steps.étape",
        "invalid step id",
    ),
    Case(
        "step-id-very-long",
        steps(f"{'s' * 100}:\n  uses: toy_source\n  config: {{count: 1}}\n"),
        "steps.sss",
        "at most 63",
    ),
    Case(
        "step-id-traversal",
        steps("'../x':\n  uses: toy_source\n  config: {count: 1}\n"),
        "steps.",
        "invalid step id",
    ),
    # ---- step types and keys
    Case(
        "unknown-step-type",
        steps("t:\n  uses: trian\n"),
        "steps.t.uses",
        "did you mean 'train'",
    ),
    Case("id-is-not-a-type", steps("mystery: {}\n"), "steps.mystery", "set 'uses'"),
    Case("unknown-step-key", steps("source:\n  usse: toy_source\n"), "steps.source.usse", "unknown key"),
    Case(
        "unknown-config-key",
        steps("source:\n  uses: toy_source\n  config: {cnt: 3}\n"),
        "steps.source.config.cnt",
        "unknown key",
    ),
    # ---- types and numbers
    Case(
        "config-wrong-type",
        steps("source:\n  uses: toy_source\n  config: {count: ten}\n"),
        "steps.source.config.count",
        "valid integer",
    ),
    Case(
        "config-missing-required",
        steps("source:\n  uses: toy_source\n  config: {}\n"),
        "steps.source.config.count",
        "required field",
    ),
    Case(
        "config-negative",
        steps("source:\n  uses: toy_source\n  config: {count: -5}\n"),
        "steps.source.config.count",
        "greater than or equal to 0",
    ),
    Case(
        "config-absurd",
        steps("source:\n  uses: toy_source\n  config: {count: 1000000000000}\n"),
        "steps.source.config.count",
        "less than or equal",
    ),
    Case(
        "config-is-a-list",
        steps("source:\n  uses: toy_source\n  config: [1]\n"),
        "steps.source.config",
        "valid dictionary",
    ),
    Case(
        "retries-negative",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  retries: -1\n"),
        "steps.source.retries",
        "greater than or equal",
    ),
    Case(
        "retries-absurd",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  retries: 1000\n"),
        "steps.source.retries",
        "less than or equal",
    ),
    Case(
        "cache-not-bool",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  cache: maybe\n"),
        "steps.source.cache",
        "valid boolean",
    ),
    Case(
        "cpu-not-a-quantity",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  resources: {cpu: lots}\n"),
        "steps.source.resources.cpu",
        "Kubernetes quantity",
    ),
    Case(
        "gpu-negative",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  resources: {gpu: -1}\n"),
        "steps.source.resources.gpu",
        "greater than or equal",
    ),
    Case(
        "gpu-absurd",
        steps(SOURCE.replace("  ", "", 1).replace("\n  ", "\n") + "  resources: {gpu: 100000}\n"),
        "steps.source.resources.gpu",
        "less than or equal",
    ),
    # ---- wiring
    Case(
        "dangling-input",
        steps("total:\n  uses: toy_sum\n  inputs: {dataset: nowhere.dataset}\n"),
        "steps.total.inputs.dataset",
        "unknown step 'nowhere'",
    ),
    Case(
        "input-without-output",
        steps(
            SOURCE.replace("  ", "", 1).replace("\n  ", "\n")
            + "total:\n  uses: toy_sum\n  inputs: {dataset: source}\n"
        ),
        "steps.total.inputs.dataset",
        "'<step id>.<output>'",
    ),
    Case(
        "unknown-output",
        steps(
            SOURCE.replace("  ", "", 1).replace("\n  ", "\n")
            + "total:\n  uses: toy_sum\n  inputs: {dataset: source.nope}\n"
        ),
        "steps.total.inputs.dataset",
        "has no output 'nope'",
    ),
    Case(
        "kind-mismatch",
        steps(
            SOURCE.replace("  ", "", 1).replace("\n  ", "\n")
            + "total:\n  uses: toy_sum\n  inputs: {dataset: source.dataset}\ncopy:\n  uses: toy_copy\n  inputs: {dataset: total.report}\n"
        ),
        "steps.copy.inputs.dataset",
        "takes a dataset ref but total.report is a report ref",
    ),
    Case(
        "unknown-input-name",
        steps(
            SOURCE.replace("  ", "", 1).replace("\n  ", "\n")
            + "total:\n  uses: toy_sum\n  inputs: {data: source.dataset}\n"
        ),
        "steps.total.inputs.data",
        "has no input 'data'",
    ),
    Case(
        "required-input-missing",
        steps("total:\n  uses: toy_sum\n"),
        "steps.total.inputs",
        "required input 'dataset'",
    ),
    Case(
        "self-wiring",
        steps("copy:\n  uses: toy_copy\n  inputs: {dataset: copy.dataset}\n"),
        "steps.copy.inputs.dataset",
        "its own output",
    ),
    Case(
        "cycle",
        steps(
            "a:\n  uses: toy_copy\n  inputs: {dataset: b.dataset}\nb:\n  uses: toy_copy\n  inputs: {dataset: a.dataset}\n"
        ),
        "steps.a.inputs",
        "dependency cycle: a -> b -> a",
    ),
    # ---- defaults, URIs and schemes
    Case(
        "unknown-defaults-key",
        steps(SOURCE, defaults="defaults: {artifact_rot: x}\n"),
        "defaults.artifact_rot",
        "unknown key",
    ),
    Case(
        "unknown-mlflow-key",
        steps(SOURCE, defaults="defaults: {mlflow: {tracking: x}}\n"),
        "defaults.mlflow.tracking",
        "unknown key",
    ),
    Case(
        "artifact-root-unknown-scheme",
        steps(SOURCE, defaults="defaults: {artifact_root: 'gopher://h/x'}\n"),
        "defaults.artifact_root",
        "unknown URL scheme 'gopher'",
    ),
    Case(
        "artifact-root-empty",
        steps(SOURCE, defaults="defaults: {artifact_root: ''}\n"),
        "defaults.artifact_root",
        "empty string",
    ),
    Case(
        "tracking-uri-unknown-scheme",
        steps(SOURCE, defaults="defaults: {artifact_root: art, mlflow: {tracking_uri: 'ftp://h'}}\n"),
        "defaults.mlflow",
        "unknown URI scheme",
    ),
    Case(
        "registry-uri-unknown-scheme",
        steps(SOURCE, defaults="defaults: {artifact_root: art, mlflow: {registry_uri: 'redis://h'}}\n"),
        "defaults.mlflow",
        "registry_uri: unknown URI scheme",
    ),
    # ---- built-in steps' own checks
    Case(
        "register-name-traversal",
        steps("register:\n  config: {name: '../../etc/passwd'}\n  inputs: {}\n"),
        "steps.register.config.name",
        "registered model name",
    ),
    Case(
        "register-reserved-alias",
        steps("register:\n  config: {name: m, aliases: [latest]}\n"),
        "steps.register.config.aliases",
        "reserved by MLflow",
    ),
    Case(
        "register-reserved-tag",
        steps("register:\n  config: {name: m, tags: {mlflow.user: x}}\n"),
        "steps.register.config.tags",
        "reserved prefix",
    ),
    Case(
        "register-promote-metric-empty",
        steps("register:\n  config: {name: m, promote: true, promote_metric: ''}\n"),
        "steps.register.config.promote_metric",
        "at least 1 character",
    ),
    Case(
        "deploy-name-traversal",
        steps("deploy:\n  config: {name: '../../etc/passwd', model: 'models:/m/1'}\n"),
        "steps.deploy.config.name",
        "lower-case letters",
    ),
    Case(
        "deploy-model-unknown-scheme",
        steps("deploy:\n  config: {name: web, model: 's3://bucket/model'}\n"),
        "steps.deploy.config.model",
        "models:/NAME@ALIAS",
    ),
    Case(
        "deploy-unknown-target",
        steps("deploy:\n  config: {name: web, model: 'models:/m/1', target: {type: lambda}}\n"),
        "steps.deploy.config.target",
        "local",
    ),
    Case(
        "deploy-absurd-timeout",
        steps(
            "deploy:\n  config: {name: web, model: 'models:/m/1', target: {type: local, startup_timeout_s: 99999999}}\n"
        ),
        "steps.deploy.config.target.local.startup_timeout_s",
        "less than or equal",
    ),
    Case(
        "featurise-bad-feature-ref",
        steps("featurise:\n  config: {repo_path: r, features: ['nocolon'], entity_columns: [id]}\n"),
        "steps.featurise.config.features",
        "feature_view:feature",
    ),
    Case(
        "featurise-inline-name-traversal",
        steps(
            "featurise:\n  config:\n    inline: {project: '../../etc', entities: [{name: e, join_keys: [id]}], sources: [{name: s, path: d.parquet}], feature_views: [{name: v, entities: [e], source: s, schema: {x: float64}}]}\n    features: ['v:x']\n    entity_columns: [id]\n"
        ),
        "steps.featurise.config.inline.project",
        "letter or '_'",
    ),
]


@pytest.fixture(autouse=True)
def toy_steps() -> Iterator[None]:
    with registered_steps():
        yield


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_spec_is_refused_with_file_field_and_expectation(case: Case, tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(case.spec, encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    matching = [p for p in err.value.problems if p.path.startswith(case.path) and case.says in p.message]
    assert matching, err.value.problems
    problem = matching[0]
    assert problem.file == str(spec.resolve())
    if case.line:
        assert problem.line is not None

    runner = CliRunner()
    for command in (["check", str(spec)], ["run", str(spec)]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        assert "configuration error" in result.output
        assert str(spec.resolve()) in result.output
        assert case.says in result.output
    # Nothing written anywhere under the spec's directory but the spec itself.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]


GOOD = steps(SOURCE)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--run-id", "../../escape"], "run id '../../escape' cannot name a directory"),
        (["--run-id", "a/b"], "cannot name a directory"),
        (["--only", "nosuchstep"], "unknown step 'nosuchstep'"),
    ],
)
def test_bad_run_arguments_exit_2_and_write_nothing(args: list[str], says: str, tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(GOOD)
    result = CliRunner().invoke(main, ["run", str(spec), *args])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not (tmp_path / "art" / "lineage").exists()
    assert not list(tmp_path.parent.glob("escape*"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["toy_source", "--config", '{"count": -1}'], "toy_source.config.count"),
        (["toy_source", "--config", "{not json"], "--config: expected JSON"),
        (
            ["toy_source", "--config", '{"count": 1}', "--run-id", "../../escape"],
            "would leave the artifact root",
        ),
        (
            ["toy_sum", "--input", 'dataset={"kind": "report", "uri": "/x", "passed": true}'],
            "expected a dataset ref",
        ),
        (["toy_sum", "--input", "dataset"], "expected NAME=REF_JSON"),
        (["toy_sum", "--input", 'data={"kind": "dataset", "uri": "/x"}'], "has no input 'data'"),
        (["register", "--config", '{"name": "../../etc/passwd"}'], "register.config.name"),
        (["nosuchstep"], "unknown step 'nosuchstep'"),
    ],
)
def test_bad_step_arguments_exit_2_and_write_nothing(args: list[str], says: str, tmp_path: Path) -> None:
    root = tmp_path / "art"
    result = CliRunner().invoke(main, ["step", *args, "--artifact-root", str(root)])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not (root / "lineage").exists() and not (root / "mlflow.db").exists()
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.parent.glob("escape*"))


def test_the_real_cli_process_exits_2(tmp_path: Path) -> None:
    """The same through a real ``mlsteps`` process (exit codes survive the console script)."""
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(steps("t:\n  uses: trian\n"))
    mlsteps = Path(sys.executable).parent / "mlsteps"
    for command in ("check", "run"):
        proc = subprocess.run([str(mlsteps), command, str(spec)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "steps.t.uses" in proc.stderr and "did you mean 'train'" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]
