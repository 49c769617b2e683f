"""Building a flow from a spec imports no heavy library (fresh interpreter of this env)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import write_spec

HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")

PROBE = """
import json, sys
from mlsteps_prefect import build_flow
flow = build_flow({spec!r})
assert flow.name == "toy", flow.name
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_building_a_flow_is_light(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: toy
        steps:
          source: {uses: toy_source, config: {count: 3}}
          total: {uses: toy_sum, inputs: {dataset: source.dataset}}
        """,
    )
    code = PROBE.format(spec=str(spec), heavy=HEAVY)

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=toy_plugin_env,
        timeout=300,
        check=False,
    )

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "penguins" / "prefect_flow.py"

EXAMPLE_PROBE = """
import json, runpy, sys
from mlsteps.errors import ConfigError
try:
    flow = runpy.run_path({path!r})["flow"]
except ConfigError as exc:
    if "No module named 'mlsteps.steps." not in str(exc):
        raise
    print(json.dumps({{"missing": str(exc)}}))
else:
    print(json.dumps({{"name": flow.name, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def test_example_flow_builds_lightly() -> None:
    code = EXAMPLE_PROBE.format(path=str(EXAMPLE), heavy=HEAVY)

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )

    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"name": "penguins", "heavy": []}


def test_example_retraining_loop_module_builds_lightly() -> None:
    """``prefect_retrain.py`` imports without a server or an ML library; its monitor flow is ``monitor.yaml``'s."""
    code = (
        "import json, runpy, sys\n"
        f"module = runpy.run_path({str(EXAMPLE.with_name('prefect_retrain.py'))!r})\n"
        "print(json.dumps({'monitor': module['monitor'].name, 'pool': module['WORK_POOL'],\n"
        "    'functions': sorted(n for n in ('deploy_training', 'retrain_on_drift', 'main') if callable(module[n])),\n"
        f"    'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )

    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "monitor": "penguins_monitor",
        "pool": "penguins",
        "functions": ["deploy_training", "main", "retrain_on_drift"],
        "heavy": [],
    }


def test_the_kubernetes_events_and_feast_modules_are_light() -> None:
    code = (
        "import json, sys\n"
        "import mlsteps_prefect.kubernetes, mlsteps_prefect.events, mlsteps_prefect.feast\n"
        f"heavy = {{*{HEAVY!r}, 'prefect_kubernetes', 'kubernetes_asyncio'}}\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
