"""Re-run the pipeline that produced a registered model version, from its lineage.

The steps, their configs and their wiring come from the lineage records that
lead to the version; the source data is located by its recorded URI and must
still have its recorded content hash, or reproduction is refused. Side-effect
steps (the register step the walk starts from) are not re-run: the point is to
check that the same data, config and code give the same metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from mlsteps.errors import ConfigError, DataError
from mlsteps.hashing import hash_file
from mlsteps.lineage import LineageNode, LineageRecord, LineageRecorder, find_model_version, trace
from mlsteps.storage import ArtifactStore, is_local, to_local_path

if TYPE_CHECKING:
    from pathlib import Path

    from mlsteps.context import MlflowSettings
    from mlsteps.runner import RunSummary


@dataclass
class MetricCheck:
    """One recorded metric next to its reproduced value."""

    step: str
    metric: str
    recorded: float
    reproduced: float | None

    @property
    def matches(self) -> bool:
        if self.reproduced is None:
            return False
        return math.isclose(self.recorded, self.reproduced, rel_tol=1e-9, abs_tol=1e-12)


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`."""

    model: str
    version: str
    summary: RunSummary
    checks: list[MetricCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.summary.ok and bool(self.checks) and all(c.matches for c in self.checks)


def _flatten(node: LineageNode) -> list[tuple[LineageRecord, dict[str, tuple[LineageRecord, str]]]]:
    """Records in dependency order, each with ``input -> (producer record, producer output)``."""
    seen: dict[str, tuple[LineageRecord, dict[str, tuple[LineageRecord, str]]]] = {}

    def visit(n: LineageNode) -> None:
        wiring: dict[str, tuple[LineageRecord, str]] = {}
        for name, parent in n.parents.items():
            visit(parent)
            link = n.record.inputs[name]
            output = next(
                out
                for out, plink in parent.record.outputs.items()
                if plink.fingerprint == link.fingerprint and plink.ref.get("kind") == link.ref.get("kind")
            )
            wiring[name] = (parent.record, output)
        seen.setdefault(n.record.record_id, (n.record, wiring))

    visit(node)
    return list(seen.values())


def _check_sources(records: list[tuple[LineageRecord, dict[str, tuple[LineageRecord, str]]]]) -> None:
    """Refuse when a root step's recorded data file is gone or changed."""
    for record, wiring in records:
        if wiring:
            continue
        for link in record.outputs.values():
            ref = link.ref
            uri = ref.get("uri")
            recorded = ref.get("content_hash")
            # Only data the step read from outside the artifact root is a source.
            if ref.get("kind") != "dataset" or not uri or not recorded or not is_local(uri):
                continue
            path = to_local_path(uri)
            if not path.is_file():
                raise DataError(
                    f"cannot reproduce: source data {path} (step {record.run_key.step!r}) is gone"
                )
            actual = hash_file(path)
            if actual != recorded:
                raise DataError(
                    f"cannot reproduce: source data {path} (step {record.run_key.step!r}) changed since the "
                    f"model was trained: recorded {recorded}, now {actual}"
                )


def reproduce(
    *,
    artifact_root: str,
    model: str,
    version: str,
    base_dir: Path,
    mlflow: MlflowSettings | None = None,
    run_id: str | None = None,
) -> Reproduction:
    """Re-run the steps that produced ``model`` ``version`` and compare their metrics."""
    from mlsteps.context import new_run_id
    from mlsteps.runner import LocalRunner
    from mlsteps.spec import parse_spec

    records = LineageRecorder(ArtifactStore(artifact_root)).records()
    start = find_model_version(records, model, version)
    if start is None:
        raise ConfigError(f"no lineage record under {artifact_root} produced {model} version {version}")
    chain = [item for item in _flatten(trace(records, start)) if item[0].record_id != start.record_id]
    if not chain:
        raise ConfigError(f"{model} v{version} has no recorded upstream steps to reproduce")
    _check_sources(chain)
    steps: dict[str, Any] = {}
    for record, wiring in chain:
        entry: dict[str, Any] = {"uses": record.step_type, "config": record.config}
        if wiring:
            entry["inputs"] = {name: f"{rec.run_key.step}.{out}" for name, (rec, out) in wiring.items()}
        steps[record.run_key.step] = entry
    pipeline = start.run_key.pipeline
    text = yaml.safe_dump({"name": pipeline, "defaults": {"artifact_root": artifact_root}, "steps": steps})
    spec = parse_spec(text, path=base_dir / f"reproduce-{model}-{version}.yaml")
    runner = LocalRunner(spec, run_id=run_id or f"reproduce-{new_run_id()}", use_cache=False, mlflow=mlflow)
    summary = runner.run()
    checks: list[MetricCheck] = []
    for record, _ in chain:
        step = record.run_key.step
        outcome = next((o for o in summary.outcomes if o.step_id == step), None)
        new = outcome.result.metrics if outcome and outcome.result else {}
        checks.extend(
            MetricCheck(step, name, value, new.get(name)) for name, value in sorted(record.metrics.items())
        )
    return Reproduction(model=model, version=version, summary=summary, checks=checks)
