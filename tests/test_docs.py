"""The documentation is true: generated pages are current, YAML samples are valid, and the
getting-started page works when followed literally."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsteps.errors import ConfigError
from mlsteps.registry import get_step
from mlsteps.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(page: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == lang]


def yaml_samples() -> list[tuple[str, str]]:
    """Every YAML block in the docs that declares steps (a whole spec or a `steps:` fragment)."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        if page.name == "troubleshooting.md":  # broken on purpose, and generated from the real errors
            continue
        for i, body in enumerate(blocks(page, "yaml")):
            text = f"steps:\n{body}" if body.startswith("  ") and not body.startswith("   ") else body
            data = yaml.safe_load(text)
            if isinstance(data, dict) and isinstance(data.get("steps"), dict):
                found.append((f"{page.relative_to(ROOT)}#{i}", text))
    return found


@pytest.mark.parametrize(
    ("script", "page"),
    [("gen_config_reference.py", "reference/config.md"), ("gen_troubleshooting.py", "troubleshooting.md")],
)
def test_generated_pages_are_current(script: str, page: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--check"], check=False)
    assert out.returncode == 0, f"docs/{page} is stale: run scripts/{script}"


SAMPLES = yaml_samples()


def test_the_docs_have_step_samples() -> None:
    assert len(SAMPLES) >= 12


@pytest.mark.parametrize(("where", "text"), SAMPLES, ids=[w for w, _ in SAMPLES])
def test_every_step_config_in_the_docs_is_valid(where: str, text: str) -> None:
    """Each step's config in a sample validates against its step's model; whole specs load."""
    data: dict[str, Any] = yaml.safe_load(text)
    for step_id, step in data["steps"].items():
        step_cls = get_step(step.get("uses", step_id))
        step_cls.parse_config(step.get("config"), file=where)
    if "name" in data:
        try:
            parse_spec(text)
        except ConfigError as exc:  # a whole spec must load, wiring and all
            pytest.fail(f"{where}: {exc}")


def test_getting_started_runs_literally(tmp_path: Path) -> None:
    """'Write your own pipeline': the page's data snippet, spec and commands, in order."""
    page = DOCS / "getting-started.md"
    (python_block,) = [b for b in blocks(page, "python") if "train.parquet" in b]
    (spec_block,) = [b for b in blocks(page, "yaml") if "name: my_model" in b]
    (commands,) = [b for b in blocks(page, "bash") if "mlsteps check pipeline.yaml" in b]
    subprocess.run([sys.executable, "-c", python_block], cwd=tmp_path, check=True, timeout=120)
    (tmp_path / "pipeline.yaml").write_text(spec_block)
    for line in commands.strip().splitlines():
        argv = line.split()
        argv[0] = str(BIN / Path(argv[0]).name)  # the page's .venv/bin/mlsteps is this environment's
        out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
    assert (tmp_path / ".mlsteps" / "mlflow.db").is_file()
