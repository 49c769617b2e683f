"""``make bench``: run every benchmark and write benchmarks/results.md."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cache
import overhead
import parse
from _common import QUICK, SMOKE, machine

#: Smoke runs (``make bench-smoke``, in ``make test``) must not overwrite the published results.
OUT = Path(os.environ.get("BENCH_OUT") or Path(__file__).with_name("results.md"))


def main() -> int:
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
    lines += parse.main()
    lines += overhead.main()
    lines += cache.main()
    lines += [f"Total benchmark time: {time.time() - started:.0f} s.", ""]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
