"""Content hashes for configs, files and directories.

Hashes are how the runner decides a step can be reused and how lineage links a
deployed model back to the exact data that made it. All are SHA-256, prefixed
with the algorithm so the format can evolve.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """Serialise ``value`` to JSON with sorted keys and no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def hash_value(value: Any) -> str:
    """Hash any JSON-serialisable value independently of key order."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


def hash_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """Stream a file through SHA-256 (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def hash_path(path: str | os.PathLike[str]) -> str:
    """Hash a file, or a directory by its relative file names and contents."""
    p = Path(path)
    if p.is_file():
        return hash_file(p)
    if not p.is_dir():
        raise FileNotFoundError(str(p))
    digest = hashlib.sha256()
    for child in sorted(x for x in p.rglob("*") if x.is_file()):
        digest.update(child.relative_to(p).as_posix().encode())
        digest.update(b"\0")
        digest.update(hash_file(child).encode())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
