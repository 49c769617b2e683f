"""The artifact root: where steps write outputs, lineage and the run cache.

A root is a local directory or any fsspec URL (``s3://bucket/prefix``...). Local
writes are atomic (write to a temporary file, then rename) so a killed step never
leaves a half-written JSON file behind for the cache or lineage to trip on.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from collections.abc import Iterator


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URLs."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def to_local_path(uri: str) -> Path:
    """The filesystem path of a local URI; raises for remote ones."""
    if not is_local(uri):
        raise ValueError(f"not a local path: {uri}")
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def resolve_root(root: str, base_dir: Path) -> str:
    """An artifact root as used everywhere: a relative local path is taken from ``base_dir``."""
    if is_local(root) and not to_local_path(root).is_absolute():
        return str((base_dir / to_local_path(root)).resolve())
    return root


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_segment(value: str, what: str) -> str:
    """``value`` if it is usable as one path segment under the root (a run id, a step id), else ConfigError.

    Such values come from users and orchestrators and become directory names:
    ``../../etc`` must not write outside the artifact root.
    """
    if not value or value in (".", "..") or any(c in value for c in "/\\\0") or not value.isprintable():
        from mlsteps.errors import ConfigError

        raise ConfigError(
            f"{what} {value!r} cannot name a directory under the artifact root: expected a non-empty "
            "name without '/', '\\', control characters, and not '.' or '..'"
        )
    return value


class ArtifactStore:
    """Read and write artifacts under one root (local path or fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root_s = os.fspath(root)
        if is_local(root_s):
            root_s = str(to_local_path(root_s).resolve())
        self.root = root_s.rstrip("/")

    @property
    def local(self) -> bool:
        return is_local(self.root)

    def uri(self, *parts: str) -> str:
        """The URI of ``parts`` joined under the root; a ``..`` segment, which would leave it, is refused."""
        for part in parts:
            if ".." in part.replace("\\", "/").split("/"):
                from mlsteps.errors import ConfigError

                raise ConfigError(f"artifact path {part!r} would leave the artifact root {self.root}")
        return "/".join([self.root, *(p.strip("/") for p in parts if p)])

    def local_dir(self, *parts: str) -> Path:
        """A local directory under the root, created if missing (local roots only)."""
        path = to_local_path(self.uri(*parts))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes(self, rel: str, data: bytes) -> str:
        uri = self.uri(rel)
        if self.local:
            atomic_write_bytes(to_local_path(uri), data)
        else:
            import fsspec

            # Object stores publish an object only once its upload completes,
            # which gives the same all-or-nothing visibility.
            with fsspec.open(uri, "wb") as fh:
                fh.write(data)
        return uri

    def write_json(self, rel: str, value: Any) -> str:
        return self.write_bytes(rel, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_bytes(self, rel_or_uri: str) -> bytes:
        uri = rel_or_uri if "://" in rel_or_uri or rel_or_uri.startswith("/") else self.uri(rel_or_uri)
        import fsspec

        with fsspec.open(uri, "rb") as fh:
            data: bytes = fh.read()
        return data

    def read_json(self, rel_or_uri: str) -> Any:
        return json.loads(self.read_bytes(rel_or_uri))

    def exists(self, rel_or_uri: str) -> bool:
        uri = rel_or_uri if "://" in rel_or_uri or rel_or_uri.startswith("/") else self.uri(rel_or_uri)
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(uri)
        return bool(fs.exists(path))

    def glob(self, pattern: str) -> Iterator[str]:
        """URIs under the root matching ``pattern`` (relative), sorted."""
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(self.uri(pattern))
        for found in sorted(fs.glob(path)):
            yield found if self.local else fs.unstrip_protocol(found)
