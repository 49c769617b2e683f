"""Parse/load cost: fresh-process time to import and build a pipeline, mlsteps vs hand-written.

Contenders run alternately in fresh interpreters of each orchestrator's own
environment (``.venvs/<orchestrator>``); each reports its peak RSS and which heavy
libraries ended up imported (none may be, for either side).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from _common import PEAK_SNIPPET, QUICK, ROOT, SMOKE, Contender, compare, table

SPEC = ROOT / "examples" / "penguins" / "pipeline.yaml"
HAND = ROOT / "benchmarks" / "handwritten"
HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")
HEAVY_SNIPPET = f"\nimport sys, json; print('HEAVY', json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"


def _py(env: str) -> str:
    return str(ROOT / ".venvs" / env / "bin" / "python")


def _load(path: Path, attr: str) -> str:
    return (
        "import importlib.util\n"
        f"s = importlib.util.spec_from_file_location('m', {str(path)!r}); m = importlib.util.module_from_spec(s)\n"
        f"s.loader.exec_module(m); obj = m.{attr}\n"
    )


def contenders(home: Path) -> list[tuple[str, list[Contender], str]]:
    af_env = dict(os.environ, AIRFLOW_HOME=str(home / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    pf_env = dict(os.environ, PREFECT_HOME=str(home / "prefect"))
    dg_env = dict(os.environ, DAGSTER_HOME=str(home / "dagster"))
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    groups = []
    build = f"from mlsteps_airflow.dag import build_dag\nobj = build_dag({str(SPEC)!r})\n"
    groups.append(
        (
            "(a) Airflow: one DAG file",
            [
                Contender(
                    "build_dag", [_py("airflow"), "-c", build + HEAVY_SNIPPET + PEAK_SNIPPET], env=af_env
                ),
                Contender(
                    "hand-written @task",
                    [
                        _py("airflow"),
                        "-c",
                        _load(HAND / "airflow_dag.py", "dag") + HEAVY_SNIPPET + PEAK_SNIPPET,
                    ],
                    env=af_env,
                ),
            ],
            "hand-written @task",
        )
    )
    many_build = (
        f"from mlsteps_airflow.dag import build_dag\n"
        f"dags = [build_dag({str(SPEC)!r}, dag_id=f'penguins_{{i}}') for i in range(100)]\n"
    )
    many_hand = (
        _load(HAND / "airflow_dag.py", "penguins_dag") + "dags = [obj(f'hand_{i}') for i in range(100)]\n"
    )
    groups.append(
        (
            "(b) Airflow: 100 pipelines in one DAG file",
            [
                Contender(
                    "build_dag x100",
                    [_py("airflow"), "-c", many_build + HEAVY_SNIPPET + PEAK_SNIPPET],
                    env=af_env,
                ),
                Contender(
                    "hand-written x100",
                    [_py("airflow"), "-c", many_hand + HEAVY_SNIPPET + PEAK_SNIPPET],
                    env=af_env,
                ),
            ],
            "hand-written x100",
        )
    )
    dg_build = (
        f"from mlsteps_dagster import build_definitions\n"
        f"obj = build_definitions({str(SPEC)!r}); obj.resolve_asset_graph()\n"
    )
    dg_hand = _load(HAND / "dagster_defs.py", "defs") + "obj.resolve_asset_graph()\n"
    groups.append(
        (
            "(c) Dagster: Definitions",
            [
                Contender(
                    "build_definitions",
                    [_py("dagster"), "-c", dg_build + HEAVY_SNIPPET + PEAK_SNIPPET],
                    env=dg_env,
                ),
                Contender(
                    "hand-written assets",
                    [_py("dagster"), "-c", dg_hand + HEAVY_SNIPPET + PEAK_SNIPPET],
                    env=dg_env,
                ),
            ],
            "hand-written assets",
        )
    )
    pf_build = f"from mlsteps_prefect import build_flow\nobj = build_flow({str(SPEC)!r})\n"
    groups.append(
        (
            "(d) Prefect: flow module",
            [
                Contender(
                    "build_flow", [_py("prefect"), "-c", pf_build + HEAVY_SNIPPET + PEAK_SNIPPET], env=pf_env
                ),
                Contender(
                    "hand-written flow",
                    [
                        _py("prefect"),
                        "-c",
                        _load(HAND / "prefect_flow.py", "penguins") + HEAVY_SNIPPET + PEAK_SNIPPET,
                    ],
                    env=pf_env,
                ),
            ],
            "hand-written flow",
        )
    )
    return groups


def main() -> list[str]:
    runs = 1 if SMOKE else (3 if QUICK else 5)
    lines = [
        "## 1. Parse/load cost (fresh process: import + build)",
        "",
        f"Each contender ran {runs} times in a fresh interpreter after one warm-up, alternating with its",
        "baseline. Target: ratio <= 1.10 and no heavy library (mlflow, feast, GX, sklearn, kubernetes,",
        "pandas) imported while parsing. Both sides build the example's six steps (validate, featurise,",
        "train, evaluate, register, deploy); the Prefect flows both take run parameters.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for title, group, baseline in contenders(Path(tmp)):
            outs = compare(group, runs=runs, warmup=0 if SMOKE else 1)
            lines += table(title, group, baseline)
            for c, out in zip(group, outs, strict=True):
                heavy = next(
                    (json.loads(ln.split(" ", 1)[1]) for ln in out.splitlines() if ln.startswith("HEAVY ")),
                    None,
                )
                lines.append(f"- {c.name}: heavy modules imported: {heavy or 'none'}")
            lines.append("")
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
