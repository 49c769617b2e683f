"""Write a deterministic "next batch" of penguins for the monitoring demo.

The batch is a bootstrap sample of the example data (``data/penguins.parquet``,
written by ``prepare_data.py``) with labels. By default it is drifted the way a
change of colony would drift it: heavier birds with longer flippers and bills,
mostly from Biscoe island. ``--no-drift`` writes an undrifted sample instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(source: Path, out: Path, *, drift: bool, rows: int = 300, seed: int = 7) -> Path:
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(source)
    rng = np.random.default_rng(seed)
    batch = df.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    if drift:
        batch["body_mass_g"] = batch["body_mass_g"] + 650 + rng.normal(0, 150, rows)
        batch["flipper_length_mm"] = batch["flipper_length_mm"] + 12
        batch["bill_length_mm"] = batch["bill_length_mm"] * 1.12
        batch["island"] = np.where(rng.random(rows) < 0.8, "Biscoe", batch["island"])
    batch["penguin_id"] = np.arange(100_001, 100_001 + rows)
    batch["event_timestamp"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(rows), unit="h"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    batch.to_parquet(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=HERE / "data" / "penguins.parquet")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "next_batch.parquet")
    parser.add_argument("--no-drift", action="store_true", help="write an undrifted sample")
    args = parser.parse_args()
    path = build(args.source, args.out, drift=not args.no_drift)
    print(f"wrote {path} ({'undrifted' if args.no_drift else 'drifted'})")


if __name__ == "__main__":
    main()
