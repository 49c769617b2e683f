"""Check the template variables before anything is written; a bad value stops with a clear message.

Cookiecutter renders this file with the answers, then runs it: a non-zero exit
aborts generation. Every problem is printed, one line per variable. (Choice
variables such as ``deploy`` are checked by cookiecutter itself.)
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

SLUG = {{ cookiecutter.project_slug | tojson }}
MODEL_NAME = {{ cookiecutter.model_name | tojson }}
MLSTEPS_SOURCE = {{ cookiecutter.mlsteps_source | tojson }}

#: The package name, the directory, the pipeline name (Airflow DAG id, Dagster group, Prefect
#: flow), the Feast project and, with '-' for '_', the deployment name all derive from the slug:
#: lowercase (the same on every file system), at most 63 characters, ending with a letter or digit.
SLUG_PATTERN = re.compile(r"[a-z](?:[a-z0-9_]{0,61}[a-z0-9])?")
#: The register step's rule for registered model names (MLflow accepts more, URIs do not).
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
#: Top-level modules the project imports: a package of the same name would shadow them.
RESERVED = {
    "airflow",
    "dagster",
    "prefect",
    "mlsteps",
    "mlsteps_airflow",
    "mlsteps_dagster",
    "mlsteps_prefect",
    "mlflow",
    "feast",
    "great_expectations",
    "sklearn",
    "pandas",
    "numpy",
    "pyarrow",
    "test",
    "tests",
}


def problems() -> list[str]:
    found = []
    if not SLUG_PATTERN.fullmatch(SLUG) or keyword.iskeyword(SLUG):
        found.append(
            f"project_slug: {SLUG!r} is not a valid slug: use 1-63 lowercase letters, digits and '_', "
            "starting with a letter, ending with a letter or digit, and not a Python keyword (it names "
            "the Python package, the project directory, the pipeline and the Feast project)"
        )
    elif SLUG in RESERVED:
        found.append(f"project_slug: {SLUG!r} would shadow the package of the same name; choose another")
    if not MODEL_NAME_PATTERN.fullmatch(MODEL_NAME):
        found.append(
            f"model_name: {MODEL_NAME!r} is not a valid registered model name: use letters, digits, "
            "'_', '.' and '-' (1-128 characters, starting with a letter or digit)"
        )
    if MLSTEPS_SOURCE != "pypi":
        source = Path(MLSTEPS_SOURCE)
        if not source.is_absolute() or any(c in MLSTEPS_SOURCE for c in "\"'\\\n"):
            found.append(
                f"mlsteps_source: {MLSTEPS_SOURCE!r} must be 'pypi' or the absolute path of an "
                "mlsteps checkout (no quotes or backslashes)"
            )
        elif not (source / "packages" / "mlsteps" / "pyproject.toml").is_file():
            found.append(
                f"mlsteps_source: {MLSTEPS_SOURCE} is not an mlsteps checkout "
                "(no packages/mlsteps/pyproject.toml there)"
            )
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
