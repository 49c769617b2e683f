"""Write scikit-learn's bundled diabetes data (442 patients, 10 features) for the example.

Nothing is downloaded: the data ships inside scikit-learn. The features are
already mean-centred and scaled by scikit-learn; ``target`` is a quantitative
measure of disease progression one year after baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out_dir: Path) -> Path:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True).frame
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "diabetes.parquet"
    df.to_parquet(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "data", help="output directory")
    print(f"wrote {build(parser.parse_args().out)}")


if __name__ == "__main__":
    main()
