"""Write the sample data: the wine recognition data bundled with scikit-learn (nothing is downloaded).

178 wines from three cultivars, 13 chemical measurements each. Feast needs an
entity key and an event time, which the data lacks, so both are derived
deterministically: ``wine_id`` is the 1-based row number and ``event_timestamp``
is 2024-01-01 00:00 UTC plus ``wine_id`` hours. Replace this module with your
own loader; keep the columns the pipeline, the Feast repo and the suite name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data"


def build(out_dir: Path) -> Path:
    """Write ``wines.parquet`` into ``out_dir`` and return its path (same bytes on every run)."""
    import pandas as pd
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    df = bunch.data.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    df["cultivar"] = [str(bunch.target_names[i]) for i in bunch.target]
    df.insert(0, "wine_id", range(1, len(df) + 1))
    df.insert(
        1,
        "event_timestamp",
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df["wine_id"], unit="h"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "wines.parquet"
    df.to_parquet(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args()
    print(f"wrote {build(args.out)}")


if __name__ == "__main__":
    main()
