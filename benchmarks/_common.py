"""Shared measuring code: fresh processes, alternating contenders, medians, peak RSS."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("BENCH_QUICK") == "1"
#: ``make bench-smoke`` (part of ``make test``): tiny sizes, one run, results not kept.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"


@dataclass
class Contender:
    name: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] | None = None
    prepare: object = None  # optional callable run before each measured run (not timed)
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)


#: Bytecode for every measured process, outside the environments. Without it, a machine that sets
#: PYTHONDONTWRITEBYTECODE (this one does) recompiles every imported module in every fresh process,
#: and the benchmark would time the compiler. The warm-up run fills it. The same directory ``make``
#: gives every process it starts (so the tests' runs have filled most of it already).
PYCACHE = ROOT / ".venvs" / ".pycache"


def bench_env(env: dict[str, str] | None) -> dict[str, str]:
    """``env`` (default: this process's) with bytecode caching on, in :data:`PYCACHE`."""
    out = dict(os.environ if env is None else env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    return out


#: Forks and times the measured process, then writes "wall_seconds maxrss_kb" to argv[1].
#: A child spawned straight from this (large) process would report at least this process's
#: RSS as its peak: Linux folds the memory a child had before ``exec`` into its ``maxrss``,
#: and ``subprocess`` spawns with ``vfork`` (the parent's memory). A small launcher that
#: forks keeps that floor at its own few MB.
LAUNCHER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{wall} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_once(c: Contender) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB, the kernel's rusage of that process) of one fresh process."""
    if callable(c.prepare):
        c.prepare()
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        measured = Path(tmp) / "measured"
        argv = [sys.executable, "-S", "-c", LAUNCHER, str(measured), *c.argv]
        code = subprocess.run(argv, cwd=c.cwd, env=bench_env(c.env), stdout=out, stderr=err, check=False)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        if code.returncode != 0 or not measured.is_file():
            raise RuntimeError(f"{c.name} failed ({code.returncode}):\n{stderr[-3000:]}")
        wall, maxrss_kb = measured.read_text().split()
    return float(wall), int(maxrss_kb) / 1024, stdout


#: Kept for snippets that want to print their own peak; the measured RSS comes from the launcher.
PEAK_SNIPPET = "\n"


def compare(
    contenders: list[Contender], *, runs: int, warmup: int = 1, warm: list[Contender] | None = None
) -> list[str]:
    """Run contenders alternately (warm-up first); return the output of each contender's last run.

    ``warm`` (default: all of them) are the contenders the warm-up rounds run, e.g. only the
    baseline when it imports everything the other side does and each run is expensive.
    """
    for _ in range(warmup):
        for c in contenders if warm is None else warm:
            run_once(c)
    last: list[str] = ["" for _ in contenders]
    for _ in range(runs):
        for i, c in enumerate(contenders):
            wall, peak, out = run_once(c)
            c.walls.append(wall)
            c.rss_mb.append(peak)
            last[i] = out
    return last


def import_warmup(
    name: str, python: str, modules: list[str], *, env: dict[str, str] | None = None
) -> Contender:
    """A warm-up that only imports ``modules`` in ``python``'s environment, not timed.

    Nearly all of a fresh run of the example is importing GX, Feast, MLflow and scikit-learn
    (plus the orchestrator), on both sides: importing them fills the bytecode cache
    (:data:`PYCACHE`) and the page cache as a whole warm-up run does, without doing the work.
    Smoke runs run no warm-up, so there this checks instead that every module is installed.
    """
    if SMOKE:
        found = subprocess.run(
            [python, "-c", FIND_MODULES, *modules], env=env, capture_output=True, text=True, check=False
        )
        if found.returncode != 0:
            raise RuntimeError(f"warm-up imports ({name}): {found.stderr.strip()}")
    return Contender(f"warm-up imports ({name})", [python, "-c", f"import {', '.join(modules)}"], env=env)


#: Finds each module named in argv without importing anything (PathFinder walks the packages'
#: directories), so a smoke run checks a warm-up's module list in a fraction of a second.
FIND_MODULES = """\
import sys
from importlib.machinery import PathFinder
missing = []
for name in sys.argv[1:]:
    path = None
    for part in name.split("."):
        spec = PathFinder.find_spec(part, path)
        if spec is None:
            missing.append(name)
            break
        path = spec.submodule_search_locations
sys.exit(f"not installed: {', '.join(missing)}" if missing else 0)
"""


#: What the example's steps import on both sides of a comparison, besides the orchestrator.
EXAMPLE_LIBRARIES = [
    "pandas",
    "pyarrow.parquet",
    "great_expectations",
    "feast",
    "feast.infra.offline_stores.dask",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "sklearn.ensemble",
    "sklearn.metrics",
    "skops.io",
]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: (section title, contender, ratio to its baseline) of every table made, for the plot.
RATIOS: list[tuple[str, str, float]] = []


def table(title: str, contenders: list[Contender], baseline: str) -> list[str]:
    base = next(c for c in contenders if c.name == baseline)
    RATIOS.extend((title, c.name, median(c.walls) / median(base.walls)) for c in contenders if c is not base)
    rows = [
        f"### {title}",
        "",
        f"| contender | median wall (s) | runs | ratio vs {baseline} | peak RSS (MB, median) |",
        "|---|---|---|---|---|",
    ]
    for c in contenders:
        ratio = median(c.walls) / median(base.walls)
        rss = f"{median(c.rss_mb):.0f}"
        rows.append(f"| {c.name} | {median(c.walls):.3f} | {len(c.walls)} | {ratio:.2f} | {rss} |")
    return [*rows, ""]


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem} RAM",
        f"- Python {sys.version.split()[0]}",
    ]
