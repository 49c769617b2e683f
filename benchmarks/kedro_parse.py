"""Parse cost of kedro-airflow's generated DAG file vs ``build_dag`` (issue #10, item 1e).

``benchmarks/kedro/penguins_kedro`` is a Kedro project with the example's six steps
(validate, featurise, train, evaluate, register, deploy, wired the same way);
``benchmarks/kedro/airflow_dags/penguins_kedro_penguins_dag.py`` is what
``kedro airflow create -p penguins`` (kedro-airflow 0.11) wrote for it, unchanged.
Kedro lives in its own environment, ``.venvs/kedro`` (``benchmarks/kedro/setup_env.sh``),
with the same Airflow release as ``.venvs/airflow``; the hand-written ``@task`` DAG parsed
in both environments shows how much of a difference the environments themselves make.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from _common import PEAK_SNIPPET, ROOT, SMOKE, Contender, compare, table
from parse import HAND, HEAVY_SNIPPET, SPEC, _py

KEDRO = ROOT / "benchmarks" / "kedro"
KEDRO_DAG = KEDRO / "airflow_dags" / "penguins_kedro_penguins_dag.py"
BASELINE = "kedro-airflow DAG"
#: Which DAGs the snippet built and their task counts (every contender must build six tasks).
DAGS_SNIPPET = (
    "\nfrom airflow.sdk.definitions._internal.contextmanager import DagContext\n"
    "found = {d.dag_id: len(d.task_ids) for d, _ in DagContext.autoregistered_dags}\n"
    "o = globals().get('obj')\n"
    "if o is not None: found[o.dag_id] = len(o.task_ids)\n"
    "print('DAGS', json.dumps(found))\n"
    "print('KEDRO', 'kedro' in sys.modules)\n"
)


def _dag_file(path: Path) -> str:
    """Execute a DAG file as Airflow's DagBag does: as a module, its DAGs auto-registered."""
    return (
        "import importlib.util, sys\n"
        "from airflow.sdk.definitions._internal.contextmanager import DagContext\n"
        f"s = importlib.util.spec_from_file_location('dagfile', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(s); sys.modules['dagfile'] = m\n"
        "DagContext.current_autoregister_module_name = 'dagfile'\n"
        "s.loader.exec_module(m)\n"
        "DagContext.current_autoregister_module_name = None\n"
    )


def setup_env() -> None:
    """Create or check ``.venvs/kedro`` (a no-op when it already holds exactly the pins)."""
    subprocess.run(["bash", str(KEDRO / "setup_env.sh")], check=True, capture_output=True)


def contenders(home: Path) -> list[Contender]:
    # Bytecode caching on, kept in Kedro's own environment (nothing written to the others): the
    # warm-up compiles, the measured runs time parsing as a DAG processor does it, with cached
    # bytecode, not CPython compiling every module again (PYTHONDONTWRITEBYTECODE=1 would make it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = dict(
        env,
        PYTHONPYCACHEPREFIX=str(ROOT / ".venvs" / "kedro" / "pycache"),
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        KEDRO_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
    )
    tail = HEAVY_SNIPPET + DAGS_SNIPPET + PEAK_SNIPPET
    build = f"from mlsteps_airflow.dag import build_dag\nobj = build_dag({str(SPEC)!r})\n"
    kedro = _dag_file(KEDRO_DAG)
    hand = _dag_file(HAND / "airflow_dag.py")
    return [
        Contender(BASELINE, [_py("kedro"), "-c", kedro + tail], cwd=KEDRO / "penguins_kedro", env=env),
        Contender("build_dag", [_py("airflow"), "-c", build + tail], env=env),
        Contender("hand-written @task (.venvs/airflow)", [_py("airflow"), "-c", hand + tail], env=env),
        Contender("hand-written @task (.venvs/kedro)", [_py("kedro"), "-c", hand + tail], env=env),
    ]


def _line(out: str, tag: str) -> str:
    return next((ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith(tag + " ")), "")


def main() -> list[str]:
    setup_env()
    runs = 1 if SMOKE else 3
    airflow_version = subprocess.run(
        [
            _py("kedro"),
            "-c",
            "import airflow, kedro, kedro_airflow; print(airflow.__version__, kedro.__version__)",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    lines = [
        "## 1e. Parse cost vs kedro-airflow's generated DAG",
        "",
        f"A Kedro {airflow_version[1]} project with the example's six steps (`benchmarks/kedro/penguins_kedro`) and",
        "the DAG file `kedro airflow create` (kedro-airflow 0.11.0) generated for it, unchanged",
        f"(`benchmarks/kedro/airflow_dags/`), parsed in `.venvs/kedro` (Airflow {airflow_version[0]}, the",
        "release of `.venvs/airflow`) vs `build_dag` for the example spec in `.venvs/airflow`. Fresh",
        f"interpreters, alternating, {runs} runs each{'' if SMOKE else ' after one warm-up'}. The hand-written",
        "`@task` DAG parsed in both environments is the control for the environments' own difference.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        group = contenders(Path(tmp))
        outs = compare(group, runs=runs, warmup=0 if SMOKE else 1)
    lines += table("parse: import + build one six-task DAG", group, BASELINE)
    for c, out in zip(group, outs, strict=True):
        heavy = json.loads(_line(out, "HEAVY") or "null")
        dags = json.loads(_line(out, "DAGS") or "{}")
        if sorted(dags.values()) != [6]:
            raise RuntimeError(f"{c.name}: expected one DAG of six tasks, got {dags}")
        kedro = " (imports kedro)" if _line(out, "KEDRO") == "True" else ""
        lines.append(f"- {c.name}: heavy modules imported: {heavy or 'none'}{kedro}")
    return [*lines, ""]


if __name__ == "__main__":
    print("\n".join(main()))
