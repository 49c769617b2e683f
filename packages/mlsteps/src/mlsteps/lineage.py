"""Lineage: one record per step run, and the walk from a model back to its data.

Records are JSON files under ``<artifact_root>/lineage/<run_id>/``, one per step
run, each written atomically, so concurrent steps and killed processes cannot
corrupt each other's records. A record links input and output refs by content
hash; walking those links from a model version reaches the exact data, config
and code that made it.
"""

from __future__ import annotations

import functools
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlsteps.context import RunKey
from mlsteps.hashing import hash_value
from mlsteps.refs import BaseRef, dump_ref, parse_ref

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlsteps.context import RunContext
    from mlsteps.step import StepConfig, StepResult
    from mlsteps.storage import ArtifactStore

#: ``started`` marks an attempt in progress: written when a step starts and replaced by its final
#: record, so an attempt killed without a chance to record a failure still shows (see :func:`interrupted`).
Status = Literal["started", "succeeded", "failed", "gate_failed", "cached"]

#: Distributions whose versions are worth recording when installed.
TRACKED_DISTRIBUTIONS = (
    "mlsteps",
    "mlflow",
    "scikit-learn",
    "great-expectations",
    "feast",
    "pandas",
    "numpy",
    "pyarrow",
    "apache-airflow",
    "dagster",
    "prefect",
)


class RefLink(BaseModel):
    """A ref as recorded in lineage, with its fingerprint for linking."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    ref: dict[str, Any]


class LineageRecord(BaseModel):
    """Everything needed to explain and reproduce one step run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    record_id: str
    run_key: RunKey
    step_type: str
    step_version: str
    config: dict[str, Any]
    config_hash: str
    cache_key: str
    inputs: dict[str, RefLink] = Field(default_factory=dict)
    outputs: dict[str, RefLink] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    status: Status
    error: str | None = None
    cached_from: str | None = Field(None, description="Record id whose outputs a cached run reused.")
    started_at: datetime
    finished_at: datetime
    duration_s: float
    packages: dict[str, str] = Field(default_factory=dict)
    code_revision: str | None = None
    trigger: dict[str, Any] | None = Field(
        None,
        description="What started the run, e.g. {'kind': 'drift', 'report': <uri>}; None if a person did.",
    )


@functools.cache
def package_versions() -> dict[str, str]:
    """Installed versions of the tracked distributions (no imports, metadata only)."""
    found = {}
    for dist in TRACKED_DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def code_revision(directory: str) -> str | None:
    """The git commit of ``directory`` (with ``-dirty`` if modified), or None outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def _links(refs: Mapping[str, BaseRef]) -> dict[str, RefLink]:
    return {k: RefLink(fingerprint=v.fingerprint(), ref=dump_ref(v)) for k, v in refs.items()}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class LineageRecorder:
    """Writes lineage records under an artifact root."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def record(
        self,
        ctx: RunContext,
        *,
        step_type: str,
        step_version: str,
        config: StepConfig,
        inputs: Mapping[str, BaseRef],
        result: StepResult | None,
        status: Status,
        error: str | None,
        started: float,
        finished: float | None = None,
        cache_key: str,
        cached_from: str | None = None,
    ) -> LineageRecord:
        finished = finished if finished is not None else time.time()
        cfg = config.model_dump(mode="json")
        record = LineageRecord(
            record_id=ctx.record_id,
            run_key=ctx.run_key,
            step_type=step_type,
            step_version=step_version,
            config=cfg,
            config_hash=hash_value(cfg),
            cache_key=cache_key,
            inputs=_links(inputs),
            outputs=_links(result.outputs) if result else {},
            metrics=dict(result.metrics) if result else {},
            status=status,
            error=error,
            cached_from=cached_from,
            started_at=_utc(started),
            finished_at=_utc(finished),
            duration_s=round(finished - started, 4),
            packages=package_versions(),
            code_revision=code_revision(str(ctx.base_dir)),
            trigger=ctx.trigger,
        )
        self.store.write_json(self.relpath(record), record.model_dump(mode="json"))
        return record

    @staticmethod
    def relpath(record: LineageRecord) -> str:
        stamp = record.started_at.strftime("%Y%m%dT%H%M%S%f")
        key = record.run_key
        return f"lineage/{key.run_id}/{stamp}-{key.step}-{key.attempt}-{record.record_id[:8]}.json"

    def records(self, run_id: str | None = None) -> list[LineageRecord]:
        """All records (of one run, if given), oldest first."""
        pattern = f"lineage/{run_id}/*.json" if run_id else "lineage/*/*.json"
        out = [LineageRecord.model_validate(self.store.read_json(uri)) for uri in self.store.glob(pattern)]
        return sorted(out, key=lambda r: (r.started_at, r.record_id))

    def runs(self) -> list[str]:
        """Run ids with lineage, oldest first."""
        return sorted({r.run_key.run_id for r in self.records()})


def interrupted(records: Iterable[LineageRecord]) -> list[LineageRecord]:
    """Attempts that started but never recorded an end, superseded by a later attempt of the same step.

    A killed process (SIGKILL, OOM, a lost node) cannot write a ``failed`` record;
    its ``started`` marker stays. Once a later attempt of the same step in the same
    run exists, the marker is known to be a crashed attempt, not one still running.
    """
    ordered = sorted(records, key=lambda r: (r.started_at, r.record_id))
    out = []
    for i, rec in enumerate(ordered):
        if rec.status != "started":
            continue
        key = rec.run_key.idempotency_key
        if any(later.run_key.idempotency_key == key for later in ordered[i + 1 :]):
            out.append(rec)
    return out


class LineageNode(BaseModel):
    """A record and the records that produced its inputs."""

    record: LineageRecord
    parents: dict[str, LineageNode] = Field(default_factory=dict)


def find_model_version(
    records: Iterable[LineageRecord], name: str, version: str | None
) -> LineageRecord | None:
    """The newest successful record that produced ``name`` (at ``version``, if given)."""
    match = None
    for rec in records:
        if rec.status not in ("succeeded", "cached"):
            continue
        for link in rec.outputs.values():
            ref = link.ref
            if (
                ref.get("kind") == "model_version"
                and ref.get("name") == name
                and (version is None or str(ref.get("version")) == str(version))
            ):
                match = rec
    return match


def trace(records: list[LineageRecord], start: LineageRecord, _depth: int = 0) -> LineageNode:
    """Walk from ``start`` back through the records that produced each of its inputs."""
    node = LineageNode(record=start)
    if _depth > 100:
        return node
    for name, link in start.inputs.items():
        producer = None
        for rec in records:
            if (
                rec.started_at <= start.started_at
                and rec.status in ("succeeded", "cached")
                and rec.record_id != start.record_id
                and _produces(rec, link)
            ):
                producer = rec  # keep the latest producer before ``start``
        if producer is not None:
            node.parents[name] = trace(records, producer, _depth + 1)
    return node


def _produces(record: LineageRecord, link: RefLink) -> bool:
    """Whether ``record`` output the artifact ``link`` refers to: same content and same kind.

    The kind matters: a model version carries its model's content hash, yet the
    register step did not produce the model it registered.
    """
    kind = link.ref.get("kind")
    return any(
        out.fingerprint == link.fingerprint and out.ref.get("kind") == kind for out in record.outputs.values()
    )


def ref_summary(ref: Mapping[str, Any]) -> str:
    """A one-line human description of a recorded ref."""
    parsed = parse_ref(dict(ref))
    kind = getattr(parsed, "kind", "ref")
    short = (parsed.content_hash or "")[7:19]
    if kind == "model_version":
        return f"model {ref['name']} v{ref['version']} {ref.get('aliases') or ''}".rstrip()
    if kind == "dataset":
        return f"dataset {Path(parsed.uri).name} rows={ref.get('rows')} sha={short}"
    if kind == "report":
        return f"report passed={ref.get('passed')} {Path(parsed.uri).name}"
    return f"{kind} {parsed.uri} {short}".rstrip()
