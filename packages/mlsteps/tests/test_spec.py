"""The spec loader reports every problem with file, line, YAML path and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TOY_SPEC, write_spec

from mlsteps.cli import main
from mlsteps.errors import ConfigError
from mlsteps.spec import load_spec

pytestmark = pytest.mark.usefixtures("toy_steps")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    return [str(p) for p in info.value.problems]


def test_valid_spec_loads_in_dependency_order(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    assert spec.name == "toy"
    assert spec.order == ["source", "total"]
    assert spec.steps["total"].inputs == {"dataset": ("source", "dataset")}
    assert spec.steps["source"].config.count == 10  # type: ignore[attr-defined]
    assert spec.downstream("source") == {"total"}


def test_order_follows_wiring_not_file_order(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: toy
        steps:
          total: {uses: toy_sum, inputs: {dataset: source.dataset}}
          source: {uses: toy_source, config: {count: 3}}
        """,
    )
    assert load_spec(path).order == ["source", "total"]


BAD_SPECS = {
    "unknown_step": (
        """\
        name: toy
        steps:
          source: {uses: toy_sourse, config: {count: 3}}
        """,
        ["steps.source.uses", "unknown step 'toy_sourse'", "did you mean 'toy_source'"],
        3,
    ),
    "unknown_key_top": (
        """\
        name: toy
        stepz: {}
        steps:
          source: {uses: toy_source, config: {count: 3}}
        """,
        ["stepz: unknown key"],
        2,
    ),
    "unknown_key_config": (
        """\
        name: toy
        steps:
          source:
            uses: toy_source
            config:
              count: 3
              colour: red
        """,
        ["steps.source.config.colour: unknown key"],
        7,
    ),
    "wrong_type": (
        """\
        name: toy
        steps:
          source:
            uses: toy_source
            config:
              count: many
        """,
        ["steps.source.config.count", "valid integer", "'many'"],
        6,
    ),
    "missing_required": (
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {}}
        """,
        ["steps.source.config.count: required field is missing"],
        3,
    ),
    "dangling_step": (
        """\
        name: toy
        steps:
          total: {uses: toy_sum, inputs: {dataset: nowhere.dataset}}
        """,
        ["steps.total.inputs.dataset", "unknown step 'nowhere'"],
        3,
    ),
    "dangling_output": (
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {count: 3}}
          total: {uses: toy_sum, inputs: {dataset: source.model}}
        """,
        ["steps.total.inputs.dataset", "has no output 'model'", "expected one of ['dataset']"],
        4,
    ),
    "missing_input": (
        """\
        name: toy
        steps:
          total: {uses: toy_sum}
        """,
        ["steps.total.inputs", "required input 'dataset' (dataset) is not wired"],
        3,
    ),
    "wrong_kind": (
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {count: 3}}
          total: {uses: toy_sum, inputs: {dataset: source.dataset}}
          again: {uses: toy_sum, inputs: {dataset: total.report}}
        """,
        ["steps.again.inputs.dataset", "takes a dataset ref but total.report is a report ref"],
        5,
    ),
    "cycle": (
        """\
        name: toy
        steps:
          a: {uses: toy_copy, inputs: {dataset: c.dataset}}
          b: {uses: toy_copy, inputs: {dataset: a.dataset}}
          c: {uses: toy_copy, inputs: {dataset: b.dataset}}
        """,
        ["steps.a.inputs", "dependency cycle: a -> c -> b -> a"],
        3,
    ),
    "bad_step_id": (
        """\
        name: toy
        steps:
          my-source: {uses: toy_source, config: {count: 3}}
        """,
        ["steps.my-source", "invalid step id", "letters, digits and underscores"],
        3,
    ),
    "yaml_syntax": (
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {count: 3}
        """,
        ["invalid YAML"],
        None,
    ),
    "not_a_mapping": ("- just\n- a list\n", ["expected a mapping with 'name' and 'steps'"], None),
    "negative_resources": (
        """\
        name: toy
        steps:
          source:
            uses: toy_source
            config: {count: 3}
            resources: {gpu: -1, memory: lots}
        """,
        ["steps.source.resources.gpu", "steps.source.resources.memory", "Kubernetes quantity"],
        6,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_names_file_path_and_expectation(tmp_path: Path, case: str) -> None:
    body, expected, line = BAD_SPECS[case]
    path = write_spec(tmp_path, body)
    found = "\n".join(problems_of(path))
    assert str(path) in found
    for fragment in expected:
        assert fragment in found, f"{fragment!r} not in {found!r}"
    if line is not None:
        assert f"{path}:{line}:" in found


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {count: -5}}
          total: {uses: toy_sum, config: {min_sum: x}, inputs: {dataset: source.dataset}}
          other: {uses: nope}
        """,
    )
    found = problems_of(path)
    assert len(found) == 3
    assert any("steps.source.config.count" in p for p in found)
    assert any("steps.total.config.min_sum" in p for p in found)
    assert any("steps.other.uses" in p for p in found)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    found = problems_of(tmp_path / "absent.yaml")
    assert "spec file not found" in found[0]


def test_cli_check_exits_2_with_every_problem(tmp_path: Path) -> None:
    path = write_spec(tmp_path, BAD_SPECS["dangling_output"][0])
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert f"{path}:4: steps.total.inputs.dataset" in result.output


def test_cli_check_ok(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TOY_SPEC)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "source -> total" in result.output


def test_cli_run_bad_spec_exits_2(tmp_path: Path) -> None:
    path = write_spec(tmp_path, BAD_SPECS["cycle"][0])
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert "dependency cycle" in result.output
