"""``make bench``: run every benchmark and write benchmarks/results.md.

``run.py NAME...`` runs some of them (and rewrites results.md with only those);
``run.py --plot`` redraws the plot from results.md as it stands.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import adapter_overhead
import cache
import kedro_parse
import overhead
import parse
import scale
import zenml_compare
from _common import QUICK, RATIOS, SMOKE, machine

#: In the order they run; ``run.py NAME...`` runs some of them.
BENCHMARKS = {
    "parse": parse,
    "kedro": kedro_parse,
    "overhead": overhead,
    "scale": scale,
    "adapters": adapter_overhead,
    "zenml": zenml_compare,
    "cache": cache,
}

#: Smoke runs (``make bench-smoke``, in ``make test``) must not overwrite the published results.
RESULTS = Path(__file__).with_name("results.md")
OUT = Path(os.environ.get("BENCH_OUT") or RESULTS)


PLOT = Path(__file__).resolve().parents[1] / "docs" / "assets" / "benchmark-ratios.png"


def plot(path: Path) -> None:
    """One horizontal bar per comparison: mlsteps' time over its baseline's (1.0 = the same)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(RATIOS))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    labels = [f"{title}: {name}" for title, name, _ in rows]
    values = [ratio for _, _, ratio in rows]
    ax.barh(labels, values, color=["#c0392b" if v > 1.10 else "#2e86c1" for v in values])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(1.10, color="grey", linestyle="--", linewidth=0.8, label="1.10")
    ax.set_xlabel("wall time ratio (mlsteps / baseline); < 1 is faster")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ratios_from(results: str) -> list[tuple[str, str, float]]:
    """The (title, contender, ratio) rows of every table in a results.md, as :func:`plot` takes them."""
    rows: list[tuple[str, str, float]] = []
    title = baseline = ""
    for line in results.splitlines():
        if line.startswith("### "):
            title, baseline = line[4:], ""
        elif line.startswith("| contender |") and "ratio vs " in line:
            baseline = line.split("ratio vs ", 1)[1].split(" |", 1)[0]
        elif baseline and line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 5 and cells[0] != baseline:
                rows.append((title, cells[0], float(cells[3])))
    return rows


def main() -> int:
    if sys.argv[1:] == ["--plot"]:
        # Redraw the plot from results.md as it stands (e.g. after re-running some benchmarks by hand).
        RATIOS[:] = ratios_from(OUT.read_text())
        plot(PLOT)
        return 0
    started = time.time()
    lines = [
        "# Benchmark results",
        "",
        f"Command: `make {'bench-smoke' if SMOKE else 'bench'}{' BENCH_QUICK=1' if QUICK else ''}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        *machine(),
        "- Medians of fresh-process runs; ratios are mlsteps over the hand-written baseline.",
        "",
    ]
    wanted = set(sys.argv[1:]) or set(BENCHMARKS)
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; expected some of {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    took: list[str] = []
    for name, module in BENCHMARKS.items():
        if name in wanted:
            began = time.time()
            lines += module.main()
            took.append(f"{name} {time.time() - began:.0f} s")
    lines += [f"Total benchmark time: {time.time() - started:.0f} s ({', '.join(took)}).", ""]
    OUT.write_text("\n".join(lines))
    if not SMOKE and OUT.resolve() == RESULTS.resolve():  # the plot shows results.md, not side runs
        plot(PLOT)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
