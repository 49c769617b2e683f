"""``make bench``: run every benchmark and write benchmarks/results.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cache
import parse
from _common import QUICK, machine

OUT = Path(__file__).with_name("results.md")


def main() -> int:
    started = time.time()
    lines = [
        "# Benchmark results",
        "",
        f"Command: `make bench{' BENCH_QUICK=1' if QUICK else ''}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        *machine(),
        "- Medians of fresh-process runs; ratios are mlsteps over the hand-written baseline.",
        "",
    ]
    lines += parse.main()
    lines += cache.main()
    lines += [f"Total benchmark time: {time.time() - started:.0f} s.", ""]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
