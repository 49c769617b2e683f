"""The project templates (templates/airflow, dagster, prefect) and ``mlsteps init``.

Fast tests render each template with cookiecutter (the real one) and check the
result: files, a spec that loads, the pre-generation hook's messages, and that
``mlsteps init`` renders the same tree; the rendered GitHub workflow is checked
against the GitHub Actions schema. The slow tests run each rendered project's own
``make test`` (``uv sync`` of the project, mlsteps from this checkout, the other
packages held to this repository's locked versions), whose tests run its pipeline
end to end on the real orchestrator.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from mlsteps.cli import main
from mlsteps.cli_init import locate_template, parse_settings
from mlsteps.errors import ConfigError, MissingDependencyError
from mlsteps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
ORCHESTRATORS = ["airflow", "dagster", "prefect"]
BIN = Path(sys.executable).parent
STEPS = ["validate", "featurise", "train", "evaluate", "register"]
#: Template files that must stay the same in all three templates (sources, before rendering).
SHARED = [
    "hooks/pre_gen_project.py",
    "{{cookiecutter.project_slug}}/pipeline.yaml",
    "{{cookiecutter.project_slug}}/.gitignore",
    "{{cookiecutter.project_slug}}/.github/workflows/ci.yml",
    "{{cookiecutter.project_slug}}/expectations/wines_suite.json",
    "{{cookiecutter.project_slug}}/feature_repo/feature_store.yaml",
    "{{cookiecutter.project_slug}}/feature_repo/definitions.py",
    "{{cookiecutter.project_slug}}/{{cookiecutter.project_slug}}/__init__.py",
    "{{cookiecutter.project_slug}}/{{cookiecutter.project_slug}}/data.py",
    "{{cookiecutter.project_slug}}/tests/helpers.py",
]
#: The orchestrator's entry file(s) in a project rendered with the default slug.
ENTRY_FILES = {
    "airflow": ["dags/wine_classifier_dag.py"],
    "dagster": ["wine_classifier/definitions.py"],
    "prefect": ["wine_classifier/flow.py", "wine_classifier/deploy.py"],
}
COMMON_FILES = [
    "pipeline.yaml",
    "pyproject.toml",
    "Makefile",
    "README.md",
    ".gitignore",
    ".github/workflows/ci.yml",
    "expectations/wines_suite.json",
    "feature_repo/feature_store.yaml",
    "feature_repo/definitions.py",
    "wine_classifier/__init__.py",
    "wine_classifier/data.py",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/test_pipeline.py",
]


def render(orchestrator: str, out: Path, **context: str) -> Path:
    return Path(
        cookiecutter(str(TEMPLATES / orchestrator), no_input=True, output_dir=str(out), extra_context=context)
    )


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
def test_template_renders_a_complete_project(orchestrator: str, tmp_path: Path) -> None:
    project = render(orchestrator, tmp_path)

    assert project == tmp_path / "wine_classifier"
    files = set(tree(project))
    assert files == {*COMMON_FILES, *ENTRY_FILES[orchestrator]}
    spec = load_spec(project / "pipeline.yaml")  # validates every step's config and the wiring
    assert spec.name == "wine_classifier"
    assert spec.order == STEPS
    assert spec.steps["register"].config.name == "wine_classifier"  # type: ignore[attr-defined]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    assert {"mlsteps[all]==0.1.0", f"mlsteps-{orchestrator}==0.1.0", "mlflow>=3.17,<3.18"} <= set(deps)
    pins = {"airflow": ["apache-airflow==3.3.2"], "dagster": ["dagster==1.13.27", "dagster-k8s==0.29.27"]}
    assert set(pins.get(orchestrator, ["prefect==3.9.1"])) <= set(deps)
    assert "uv" not in pyproject.get("tool", {})  # mlsteps from PyPI by default
    readme = (project / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert "{{" not in readme
    makefile = (project / "Makefile").read_text()
    assert "\ndemo: " in makefile
    assert "\ntest: env" in makefile
    assert "\n\t$(VENV)/bin/pytest\n" in makefile  # recipes keep their tabs


def check_workflows(*files: Path) -> subprocess.CompletedProcess[str]:
    """SchemaStore's GitHub Actions workflow schema, as vendored by check-jsonschema (no network)."""
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
def test_rendered_workflow_is_a_valid_github_workflow_running_make_test(
    orchestrator: str, tmp_path: Path
) -> None:
    project = render(orchestrator, tmp_path)
    workflow = project / ".github" / "workflows" / "ci.yml"
    checked = check_workflows(workflow)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    runs = [
        s["run"]
        for job in yaml.safe_load(workflow.read_text())["jobs"].values()
        for s in job["steps"]
        if "run" in s
    ]
    assert runs == ["make test"]  # what the README's Quick start says, nothing the project does not have
    dry = subprocess.run(["make", "-n", "test"], cwd=project, capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    assert "sync --group dev" in dry.stdout and ".venv/bin/pytest" in dry.stdout

    # The check can fail: a job without `runs-on` or `steps` is not a workflow.
    broken = tmp_path / "broken.yml"
    broken.write_text(workflow.read_text().replace("runs-on:", "runs_on:"))
    rejected = check_workflows(broken)
    assert rejected.returncode == 1, rejected.stdout
    assert "runs-on" in rejected.stdout + rejected.stderr


def test_this_repositorys_workflows_are_valid_github_workflows() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "kind.yml"}
    checked = check_workflows(*workflows)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
def test_rendered_python_is_lint_clean(orchestrator: str, tmp_path: Path) -> None:
    project = render(orchestrator, tmp_path, project_name="Lint Check", model_name="lint-check.v1")
    # The hook runs from a temp file and is not in the project: render it the way cookiecutter does.
    hook_source = (TEMPLATES / orchestrator / "hooks" / "pre_gen_project.py").read_text()
    answers = {"project_slug": "lint_check", "model_name": "lint-check.v1", "mlsteps_source": "pypi"}
    hook = tmp_path / "pre_gen_project.py"
    hook.write_text(
        StrictEnvironment(keep_trailing_newline=True).from_string(hook_source).render(cookiecutter=answers)
    )
    files = [str(p) for p in project.rglob("*.py")] + [str(hook)]

    compiled = subprocess.run([sys.executable, "-m", "py_compile", *files], capture_output=True, text=True)
    lint = subprocess.run(
        [str(BIN / "ruff"), "check", "--isolated", "--no-cache", "--line-length", "110", "--select",
         "E,F,W,I,UP,B,SIM", "--output-format", "concise", *files],
        capture_output=True, text=True, cwd=project,
    )  # fmt: skip

    formatted = subprocess.run(
        [str(BIN / "ruff"), "format", "--isolated", "--no-cache", "--line-length", "110", "--check", *files],
        capture_output=True, text=True, cwd=project,
    )  # fmt: skip

    assert compiled.returncode == 0, compiled.stderr
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_shared_files_are_the_same_in_every_template() -> None:
    different = [
        (name, other)
        for name in SHARED
        for other in ORCHESTRATORS[1:]
        if not filecmp.cmp(TEMPLATES / "airflow" / name, TEMPLATES / other / name, shallow=False)
    ]

    assert different == []


def test_variables_reach_every_file(tmp_path: Path) -> None:
    project = render(
        "prefect", tmp_path, project_name="Grape Sorter!", model_name="grapes.sorter-v2", deploy="local"
    )

    assert project.name == "grape_sorter"  # slugified from the project name
    spec = load_spec(project / "pipeline.yaml")
    assert spec.order == [*STEPS, "deploy"]
    assert spec.steps["evaluate"].config.champion.model_name == "grapes.sorter-v2"  # type: ignore[attr-defined]
    assert spec.steps["deploy"].config.name == "grape-sorter"  # type: ignore[attr-defined]
    assert "project: grape_sorter" in (project / "feature_repo" / "feature_store.yaml").read_text()
    assert (project / "grape_sorter" / "flow.py").is_file()
    helpers = (project / "tests" / "helpers.py").read_text()
    assert 'MODEL_NAME = "grapes.sorter-v2"' in helpers
    assert '"register", "deploy"]' in helpers
    assert "mlsteps deploy stop" in (project / "Makefile").read_text()


def test_mlsteps_source_renders_uv_path_sources(tmp_path: Path) -> None:
    project = render("dagster", tmp_path, mlsteps_source=str(ROOT))

    sources = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["uv"]["sources"]
    assert sources == {
        "mlsteps": {"path": f"{ROOT}/packages/mlsteps", "editable": True},
        "mlsteps-dagster": {"path": f"{ROOT}/packages/mlsteps-dagster", "editable": True},
    }
    assert all((Path(s["path"]) / "pyproject.toml").is_file() for s in sources.values())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("project_slug", "1abc", "project_slug: '1abc' is not a valid slug"),
        ("project_slug", "my-project", "project_slug: 'my-project' is not a valid slug"),
        ("project_slug", "class", "project_slug: 'class' is not a valid slug"),
        ("project_slug", "a/b", "project_slug: 'a/b' is not a valid slug"),
        ("project_slug", "trailing_", "project_slug: 'trailing_' is not a valid slug"),
        ("project_slug", "a" * 64, f"project_slug: '{'a' * 64}' is not a valid slug"),
        ("project_slug", "mlflow", "project_slug: 'mlflow' would shadow the package of the same name"),
        ("model_name", "-model", "model_name: '-model' is not a valid registered model name"),
        ("model_name", "my model", "model_name: 'my model' is not a valid registered model name"),
        ("model_name", "m" * 129, f"model_name: '{'m' * 129}' is not a valid registered model name"),
        ("model_name", 'a"b', "model_name: 'a\"b' is not a valid registered model name"),
        ("mlsteps_source", "relative/path", "mlsteps_source: 'relative/path' must be 'pypi' or the absolute"),
        ("mlsteps_source", "/nonexistent", "mlsteps_source: /nonexistent is not an mlsteps checkout"),
    ],
)
def test_bad_values_fail_in_the_pre_generation_hook(
    variable: str, value: str, message: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException):
        render("airflow", tmp_path, **{variable: value})

    err = capfd.readouterr().err
    assert f"ERROR: {message}" in err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing written


def test_edge_values_are_accepted(tmp_path: Path) -> None:
    name = "M" + "odel.v1-x_" * 12 + "7" * 7  # 128 characters
    assert len(name) == 128

    slug = "a" + "_1" * 30 + "_z"  # 63 characters
    project = render("dagster", tmp_path, project_slug=slug, model_name=name, deploy="local")

    spec = load_spec(project / "pipeline.yaml")
    assert spec.name == slug
    assert spec.steps["register"].config.name == name  # type: ignore[attr-defined]
    assert spec.steps["deploy"].config.name == slug.replace("_", "-")  # type: ignore[attr-defined]


def test_a_value_outside_a_choice_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["init", "-o", "airflow", "x", "--output-dir", str(tmp_path), "--no-input", "--set", "deploy=k8s"],
    )

    assert result.exit_code == 2
    assert "k8s provided for choice variable deploy, but the choices are ['none', 'local']" in result.output


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
def test_init_renders_the_same_tree_as_cookiecutter(orchestrator: str, tmp_path: Path) -> None:
    direct = render(orchestrator, tmp_path / "direct", project_name="Churn Model", model_name="churn")

    result = CliRunner().invoke(
        main,
        ["init", "--orchestrator", orchestrator, "Churn Model", "--output-dir", str(tmp_path / "cli"),
         "--no-input", "--set", "model_name=churn"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert f"created {tmp_path / 'cli' / 'churn_model'} ({orchestrator})" in result.output
    assert tree(tmp_path / "cli" / "churn_model") == tree(direct)


def test_init_rejects_bad_values_with_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "mlsteps"), "init", "-o", "airflow", "ok", "--output-dir", str(tmp_path), "--no-input",
         "--set", "model_name=bad name"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert proc.returncode == 2
    assert "ERROR: model_name: 'bad name' is not a valid registered model name" in proc.stderr
    assert "pre-generation check rejected the variables" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_to_overwrite_a_project(tmp_path: Path) -> None:
    args = ["init", "-o", "dagster", "twice", "--output-dir", str(tmp_path), "--no-input"]
    assert CliRunner().invoke(main, args).exit_code == 0

    again = CliRunner().invoke(main, args)

    assert again.exit_code == 2
    assert 'twice" directory already exists' in again.output


def test_templates_are_located_from_option_env_or_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLSTEPS_TEMPLATES", raising=False)
    assert locate_template("prefect") == (str(TEMPLATES / "prefect"), None)
    assert locate_template("airflow", str(ROOT)) == (str(TEMPLATES / "airflow"), None)
    assert locate_template("dagster", str(TEMPLATES / "dagster")) == (str(TEMPLATES / "dagster"), None)
    assert locate_template("dagster", "gh:mlsteps/mlsteps") == ("gh:mlsteps/mlsteps", "templates/dagster")
    monkeypatch.setenv("MLSTEPS_TEMPLATES", str(TEMPLATES))
    assert locate_template("airflow") == (str(TEMPLATES / "airflow"), None)
    monkeypatch.setenv("MLSTEPS_TEMPLATES", str(tmp_path))
    with pytest.raises(ConfigError, match=r"MLSTEPS_TEMPLATES: .* holds no 'airflow' template"):
        locate_template("airflow")
    with pytest.raises(ConfigError, match="expected one of airflow, dagster, prefect"):
        locate_template("luigi")


def test_init_without_a_template_says_where_to_get_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["init", "-o", "airflow", "x", "--template", str(tmp_path), "--output-dir", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert f"--template: {tmp_path} holds no 'airflow' template" in result.output


def test_init_without_cookiecutter_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsteps import cli_init

    for name in [m for m in sys.modules if m.split(".")[0] == "cookiecutter"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cookiecutter", None)  # makes `import cookiecutter...` fail

    with pytest.raises(
        MissingDependencyError, match=r'needs cookiecutter; install it with `pip install "cookiecutter>=2.6"`'
    ):
        cli_init.render("airflow", "x", output_dir=tmp_path, no_input=True)
    result = CliRunner().invoke(main, ["init", "-o", "airflow", "x", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "needs cookiecutter" in result.output


def test_set_values_are_parsed() -> None:
    assert parse_settings(("a=1", "b = x=y", "c=")) == {"a": "1", "b": " x=y", "c": ""}
    with pytest.raises(ConfigError, match="--set: expected KEY=VALUE, got 'novalue'"):
        parse_settings(("novalue",))


def test_cli_import_does_not_import_cookiecutter() -> None:
    code = "import sys, mlsteps.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'cookiecutter', 'jinja2'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)

    assert out.stdout.strip() == "[]"


# --- The rendered projects' own tests, in fresh environments -----------------------------------

UV = [shutil.which("uv") or sys.executable, *([] if shutil.which("uv") else ["-m", "uv"])]
#: Variables of this session that must not leak into the fresh environment's processes.
LEAKY = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DAGSTER_HOME", "PYTEST_ADDOPTS")
LEAKY_PREFIXES = ("AIRFLOW", "PREFECT_", "MLFLOW_", "UV_PROJECT")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY and not k.startswith(LEAKY_PREFIXES)}
    env["UV_PREVIEW_FEATURES"] = "package-conflicts"  # the workspace lock resolves the adapters in forks
    env["NO_COLOR"] = "1"
    return env


def run(args: list[str], cwd: Path, timeout: int, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=clean_env() | env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
def test_rendered_project_passes_its_own_make_test_in_a_fresh_environment(
    orchestrator: str, tmp_path: Path
) -> None:
    """The rendered README's ``make test``: ``uv sync`` makes the project's .venv and lock, then its tests run.

    mlsteps comes from this checkout (``mlsteps_source``); every other package is
    held to the version this repository's uv.lock tested (uv's constraint
    dependencies, through ``UV_CONFIG_FILE``), so the resolution is the project's
    own but cannot drift to an untested release.
    """
    project = render(orchestrator, tmp_path, mlsteps_source=str(ROOT))
    requirements = tmp_path / "requirements.txt"
    export = run(
        [*UV, "export", "--locked", "--package", f"mlsteps-{orchestrator}", "--no-emit-workspace",
         "--no-hashes", "--no-header", "--quiet", "--output-file", str(requirements)],
        ROOT, 120,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    pins = [line.split(";")[0].strip() for line in requirements.read_text().splitlines() if "==" in line]
    config = tmp_path / "uv.toml"
    config.write_text(f"constraint-dependencies = {json.dumps(pins)}\n")

    tests = run(["make", "test", f"UV={' '.join(UV)}"], project, 1200, UV_CONFIG_FILE=str(config))

    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-3000:]
    assert "2 passed" in tests.stdout
    assert (project / "uv.lock").is_file() and (project / ".venv" / "bin" / "pytest").is_file()
    where = run(
        [str(project / ".venv" / "bin" / "python"), "-c",
         "import mlsteps, wine_classifier; print(mlsteps.__file__); print(wine_classifier.__file__)"],
        project, 60,
    )  # fmt: skip
    assert where.stdout.split() == [
        str(ROOT / "packages" / "mlsteps" / "src" / "mlsteps" / "__init__.py"),
        str(project / "wine_classifier" / "__init__.py"),
    ], where.stderr
    assert not (project / ".mlsteps").exists()  # the tests ran on a copy


def test_the_wheel_carries_the_templates_and_init_finds_them_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import zipfile

    from mlsteps import cli_init

    uv_bin = shutil.which("uv")
    uv = [uv_bin] if uv_bin else ["python3", "-m", "uv"]
    built = subprocess.run(
        [*uv, "build", "--package", "mlsteps", "--wheel", "-o", str(tmp_path / "dist")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mlsteps-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site", [n for n in names if n.startswith("mlsteps/templates/")])
    for orchestrator in ORCHESTRATORS:
        assert f"mlsteps/templates/{orchestrator}/cookiecutter.json" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    # As installed from the wheel: no checkout next to the package, only its own copy.
    monkeypatch.setattr(cli_init, "CHECKOUT_TEMPLATES", tmp_path / "no-checkout")
    monkeypatch.setattr(cli_init, "PACKAGED_TEMPLATES", tmp_path / "site" / "mlsteps" / "templates")
    monkeypatch.delenv(cli_init.TEMPLATES_ENV, raising=False)
    result = CliRunner().invoke(
        main, ["init", "-o", "prefect", "From Wheel", "--output-dir", str(tmp_path / "out"), "--no-input"]
    )
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "out" / "from_wheel") == tree(
        render("prefect", tmp_path / "direct", project_name="From Wheel")
    )
