"""Profile the step-overhead benchmark (2): where ``mlsteps run`` spends its time vs the hand-written script.

Builds the same project as ``overhead.py`` (a copy of the example without its deploy
step, fresh MLflow store and Feast registry), runs each side once unprofiled to fill
the bytecode cache, then once under a profiler, each in a fresh interpreter, and
writes one profile per side to ``--out`` (default ``/tmp/mlsteps-profile``):

- with pyinstrument importable (it is not in the repo's environments; e.g.
  ``pip install --target /tmp/pyi pyinstrument`` and ``PYTHONPATH=/tmp/pyi``):
  ``<side>.html``, ``<side>.txt`` (call tree, library frames folded) and
  ``<side>.pyisession`` (``pyinstrument --load <file> -r text --show-all`` re-renders it);
- otherwise cProfile (standard library): ``<side>.prof`` and ``<side>.txt`` (the
  60 functions with the most cumulative time).

For mlsteps it also prints the wall time of each step (from the run's JSON summary).
``--rows N`` uses N synthetic rows (as ``scale.py``) and ``--until STAGE`` stops both
sides after that stage (the pipeline up to it, in one process; ``scale.py`` times each
step in a process of its own), e.g. to profile featurise at 1M rows.

    cd benchmarks && ../.venv/bin/python profile_overhead.py [--out DIR] [--side mlsteps|hand-written|both]
        [--rows N] [--until validate|featurise|train|register]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The hand-written script's stages, in order (mlsteps runs evaluate before register too).
STAGES = ("validate", "featurise", "train", "register")


def _profiled(call: object, out: Path, side: str) -> None:
    """Run ``call()`` under pyinstrument if importable, else cProfile; write the profile files."""
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        Profiler = None
    if Profiler is not None:
        profiler = Profiler(interval=0.001)
        profiler.start()
        try:
            call()  # type: ignore[operator]
        finally:
            profiler.stop()
            session = profiler.last_session
            assert session is not None
            session.save(str(out / f"{side}.pyisession"))
            (out / f"{side}.html").write_text(profiler.output_html())
            (out / f"{side}.txt").write_text(profiler.output_text(show_all=False, color=False, unicode=True))
        return
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    try:
        prof.runcall(call)  # type: ignore[arg-type]
    finally:
        prof.dump_stats(out / f"{side}.prof")
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(60)
        (out / f"{side}.txt").write_text(text.getvalue())


def child(side: str, project: Path, out: Path, profile: bool, until: str) -> None:
    """One side, in this (fresh) process: ``mlsteps run`` in-process, or the hand-written script."""
    os.chdir(project)
    if side == "mlsteps":
        from mlsteps.cli import main as cli

        def call() -> None:
            try:
                cli.main(["run", "pipeline.yaml", "--no-cache", "--json"], prog_name="mlsteps")
            except SystemExit as exc:
                if exc.code:
                    raise
    else:
        script = str(HERE / "handwritten" / "penguins_direct.py")

        def call() -> None:
            sys.argv = [script, str(project), "--until", until, "--max-rows", str(10**9)]
            runpy.run_path(script, run_name="__main__")

    started = time.perf_counter()
    if profile:
        _profiled(call, out, side)
    else:
        call()
    print(f"IN-PROCESS {time.perf_counter() - started:.2f}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mlsteps-profile")
    parser.add_argument("--side", choices=["mlsteps", "hand-written", "both"], default="both")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows instead of the example's data")
    parser.add_argument("--until", choices=STAGES, default="register", help="last stage on both sides")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "PROJECT", "PROFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        side, project, profile = args.child
        child(side, Path(project), out, profile == "1", args.until)
        return 0

    from _common import bench_env
    from overhead import example_project, fresh_stores

    sides = ["mlsteps", "hand-written"] if args.side == "both" else [args.side]
    with tempfile.TemporaryDirectory() as tmp:
        steps = list(STAGES[: STAGES.index(args.until) + 1])
        if args.until == "register":
            steps.insert(-1, "evaluate")
        project = example_project(Path(tmp) / "e2e", rows=args.rows, steps=steps)
        for side in sides:
            for profile in ("0", "1"):  # the unprofiled run fills the bytecode cache
                fresh_stores(project)
                started = time.perf_counter()
                proc = subprocess.run(
                    [
                        *(sys.executable, __file__, "--out", str(out), "--until", args.until),
                        *("--child", side, str(project), profile),
                    ],
                    env=bench_env(None),
                    capture_output=True,
                    text=True,
                )
                wall = time.perf_counter() - started
                if proc.returncode != 0:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
                    return 1
                inner = next(
                    (ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("IN-PROCESS ")), "?"
                )
                print(
                    f"{side} ({'profiled' if profile == '1' else 'unprofiled'}): {wall:.1f} s ({inner} s in the run itself)"
                )
                if side == "mlsteps":
                    _print_steps(proc.stdout)
    print(f"profiles in {out}")
    return 0


def _print_steps(stdout: str) -> None:
    """Each step's wall time, from ``mlsteps run --json``'s summary."""
    try:
        summary = json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return
    for step in summary.get("steps", []):
        if isinstance(step, dict) and "duration_s" in step:
            print(f"  {step.get('step', step.get('id', '?')):<10} {float(step['duration_s']):6.2f} s")


if __name__ == "__main__":
    sys.exit(main())
