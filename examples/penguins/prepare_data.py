"""Write the Palmer penguins data (shipped by the ``palmerpenguins`` package) for the example.

Nothing is downloaded: the CSV ships inside the package. The data has no entity
key or event time, which Feast needs, so both are derived deterministically:
``penguin_id`` is the 1-based row number in the package's file, and
``event_timestamp`` is 2024-01-01 00:00 UTC plus ``penguin_id`` hours.
``batch`` splits the rows into two observation batches for the monitoring demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out_dir: Path) -> Path:
    import pandas as pd
    from palmerpenguins import load_penguins

    df = load_penguins()
    df.insert(0, "penguin_id", range(1, len(df) + 1))
    df.insert(
        1,
        "event_timestamp",
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df["penguin_id"], unit="h"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "penguins.parquet"
    df.to_parquet(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "data", help="output directory")
    args = parser.parse_args()
    path = build(args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
