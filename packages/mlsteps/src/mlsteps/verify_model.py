"""Download a registered model version and verify it against the hash recorded at registration.

The init container of every pod the ``kubernetes`` and ``kserve`` targets render
runs this before the model server starts::

    python -m mlsteps.verify_model --model-uri models:/NAME/VERSION --dest /mnt/models \\
        --expected-hash sha256:...

It downloads the version's artifacts into ``--dest`` (a shared ``emptyDir``),
hashes them exactly as ``register`` did (:func:`mlsteps.backends.mlflow.download_tree_hash`)
and exits non-zero when the files differ from ``--expected-hash``, so the pod
never starts serving artifacts changed after ``deploy`` checked them. The server
container then loads the verified local copy instead of downloading again.

Exit codes: 0 verified (or nothing to verify against: no hash given, which is said
on stderr); 1 the artifacts differ (the copy is deleted); 2 the download failed or
the arguments are wrong. MLflow reads the tracking URI and the artifact store's
credentials from the environment (``MLFLOW_TRACKING_URI``, ...), as the server would.
Only the standard library and mlsteps' light modules load before MLflow.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

#: What a recorded hash looks like (``mlsteps.hashing``).
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
PROG = "mlsteps.verify_model"
#: Exit codes.
VERIFIED, CHANGED, FAILED = 0, 1, 2


def _hash(text: str) -> str:
    if not HASH.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected sha256:<64 hex digits>, got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-uri", required=True, help="models:/NAME/VERSION to download.")
    p.add_argument("--dest", required=True, type=Path, help="Directory to download into (emptied first).")
    p.add_argument(
        "--expected-hash",
        type=_hash,
        default=None,
        help="The version's mlsteps.artifact_hash tag as recorded at registration; "
        "without it the download is not verified.",
    )
    return p


def _empty(directory: Path) -> None:
    """Remove what ``directory`` holds (not the directory: it is usually a volume's mount point).

    An init container that failed half-way runs again on the same ``emptyDir``: stale
    or partial files would change the hash.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def verify(model_uri: str, dest: Path, expected: str | None) -> tuple[int, str]:
    """Download and check; the exit code and the line to print."""
    from mlsteps.backends import mlflow as mlflow_backend
    from mlsteps.errors import MlstepsError

    _empty(dest)
    try:
        tracking = os.environ.get("MLFLOW_TRACKING_URI")
        if tracking:
            mlflow_backend.check_reachable(tracking)
        actual = mlflow_backend.download_tree_hash(model_uri, dest)
    except MlstepsError as exc:
        _empty(dest)
        return FAILED, f"{PROG}: {model_uri}: {exc}"
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    if expected is None:
        return VERIFIED, (
            f"{PROG}: {model_uri}: downloaded {files} file(s) to {dest} ({actual}) but NOT verified: "
            "no hash was recorded at registration (the version was not registered by mlsteps)"
        )
    if actual != expected:
        _empty(dest)
        return CHANGED, (
            f"{PROG}: REFUSED {model_uri}: its artifacts changed since registration (the downloaded files "
            f"hash to {actual}, registration recorded {expected}); the copy was deleted and the model is "
            "not served. Find out who changed the artifact store, then register the model again"
        )
    return VERIFIED, f"{PROG}: {model_uri}: {files} file(s) in {dest} match the registered hash {expected}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Progress bars are noise in a pod's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    code, message = verify(args.model_uri, args.dest, args.expected_hash)
    verified = code == VERIFIED and args.expected_hash is not None
    print(message, file=sys.stdout if verified else sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
