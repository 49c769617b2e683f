"""Test support for mlsteps and for packages that build on it (adapters, step plugins).

Small but real steps that read and write real files under the artifact root, so
runners, caching, lineage and failure handling are exercised exactly as with the
built-in steps without loading any heavy backend; and helpers to make steps
visible in-process (:func:`registered_steps`) or to subprocesses as an installed
entry-point plugin (:func:`write_step_plugin`). Importing this module is light.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from mlsteps.errors import GateFailure
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.steps.deploy import DeployStep
from mlsteps.steps.register import RegisterStep
from mlsteps.storage import atomic_write_bytes, to_local_path

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

    from mlsteps.context import RunContext
    from mlsteps.refs import DeploymentRef


class SourceConfig(StepConfig):
    count: int = Field(ge=0, le=1_000_000, description="How many numbers to write.")
    start: int = Field(0, description="First number.")


class ToySource(Step[SourceConfig]):
    """Writes the numbers start..start+count-1 to a CSV file."""

    name = "toy_source"
    description = "write a CSV of consecutive integers"
    config_model = SourceConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SourceConfig, inputs: dict[str, BaseRef]) -> StepResult:
        path = ctx.step_dir() / "numbers.csv"
        rows = "\n".join(["n", *(str(config.start + i) for i in range(config.count))]) + "\n"
        atomic_write_bytes(path, rows.encode())
        ref = DatasetRef(
            uri=str(path),
            format="csv",
            content_hash=hash_file(path),
            rows=config.count,
            columns={"n": "int64"},
        )
        return StepResult(outputs={"dataset": ref}, metrics={"rows": float(config.count)})


class SumConfig(StepConfig):
    min_sum: float = Field(0, description="The gate: the sum must be at least this.")


class ToySum(Step[SumConfig]):
    """Sums the numbers of a dataset; a gate on the sum."""

    name = "toy_sum"
    description = "sum a CSV column, gate on a minimum"
    config_model = SumConfig
    gate = True
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        with open(to_local_path(inputs["dataset"].uri), newline="") as fh:
            total = float(sum(int(row["n"]) for row in csv.DictReader(fh)))
        passed = total >= config.min_sum
        path = ctx.step_dir() / "sum.json"
        atomic_write_bytes(path, f'{{"sum": {total}}}'.encode())
        report = ReportRef(uri=str(path), content_hash=hash_file(path), passed=passed, summary={"sum": total})
        if not passed:
            raise GateFailure("toy_sum", [f"sum {total} < min_sum {config.min_sum}"], report=report)
        return StepResult(outputs={"report": report}, metrics={"sum": total}, passed=True)


class ToyCopy(Step[SumConfig]):
    """Copies a dataset file (used to build longer chains and cycles)."""

    name = "toy_copy"
    config_model = SumConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        src = to_local_path(inputs["dataset"].uri)
        path = ctx.step_dir() / src.name
        atomic_write_bytes(path, src.read_bytes())
        ref = inputs["dataset"].model_copy(update={"uri": str(path)})
        return StepResult(outputs={"dataset": ref})


class ToyCrash(Step[SumConfig]):
    """Fails with an unexpected exception, as buggy user code would."""

    name = "toy_crash"
    config_model = SumConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset", required=False)}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        raise ZeroDivisionError("boom")


class WorkerLostError(RuntimeError):
    """What a step fails with when its worker is lost after the step's work went through."""


S = TypeVar("S", bound=Step[Any])


def crash_after_first_attempt(step_cls: type[S], step_name: str, *, kill: bool = False) -> type[S]:
    """A step type doing ``step_cls``'s real work, then failing on attempt 1 as a lost worker would.

    The orchestrator sees a failed task whose side effects (a registered version, a
    live server) exist; its retry (attempt 2) must find them instead of doing them twice.
    With ``kill``, attempt 1 does not raise: it ends its own process with ``SIGKILL``
    (no ``failed`` lineage record, no exception for the orchestrator to catch), so only
    an orchestrator running the task in a process of its own survives it.
    """

    class CrashAfterFirstAttempt(step_cls):  # type: ignore[valid-type,misc]
        name = step_name
        __doc__ = (
            f"The real `{step_cls.name}` step, {'killed' if kill else 'failing'} after its work on attempt 1."
        )

        def run(self, ctx: RunContext, config: Any, inputs: dict[str, BaseRef]) -> StepResult:
            result: StepResult = super().run(ctx, config, inputs)
            if ctx.run_key.attempt == 1:
                if kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise WorkerLostError(f"worker lost after {step_cls.name} did its work (attempt 1)")
            return result

    prefix = "Killed" if kill else "Flaky"
    CrashAfterFirstAttempt.__name__ = CrashAfterFirstAttempt.__qualname__ = f"{prefix}{step_cls.__name__}"
    return CrashAfterFirstAttempt


#: The built-in stateful steps, failing after their work on attempt 1 (their modules are light).
FlakyRegister = crash_after_first_attempt(RegisterStep, "flaky_register")
FlakyDeploy = crash_after_first_attempt(DeployStep, "flaky_deploy")
#: ``register`` and ``deploy``, killing their own process (``SIGKILL``) after their work on attempt 1.
KilledRegister = crash_after_first_attempt(RegisterStep, "killed_register", kill=True)
KilledDeploy = crash_after_first_attempt(DeployStep, "killed_deploy", kill=True)


#: The toy steps by name, as entry-point targets.
TOY_STEPS: dict[str, str] = {
    "toy_source": "mlsteps.testing:ToySource",
    "toy_sum": "mlsteps.testing:ToySum",
    "toy_copy": "mlsteps.testing:ToyCopy",
    "toy_crash": "mlsteps.testing:ToyCrash",
}
#: Built-in steps that fail (or, `killed_*`, are killed) after their work on attempt 1
#: (:func:`crash_after_first_attempt`).
FLAKY_STEPS: dict[str, str] = {
    "flaky_register": "mlsteps.testing:FlakyRegister",
    "flaky_deploy": "mlsteps.testing:FlakyDeploy",
    "killed_register": "mlsteps.testing:KilledRegister",
    "killed_deploy": "mlsteps.testing:KilledDeploy",
}


@contextlib.contextmanager
def registered_steps(*classes: type[Step[Any]]) -> Iterator[None]:
    """Register step classes for this process while the block runs (default: the toy steps)."""
    from mlsteps import registry

    chosen = classes or (ToySource, ToySum, ToyCopy, ToyCrash)
    for cls in chosen:
        registry.register_step(cls)
    try:
        yield
    finally:
        for cls in chosen:
            registry._REGISTERED.pop(cls.name, None)
        registry.refresh()


def write_step_plugin(site: Path, steps: Mapping[str, str], *, name: str = "mlsteps-test-plugin") -> Path:
    """Write an installed-looking distribution declaring ``steps`` in the ``mlsteps.steps`` group.

    Put ``site`` on ``PYTHONPATH`` (or ``sys.path``) and the steps are found through
    entry points, exactly as a published plugin's would be. Returns ``site``.
    """
    dist = site / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{step} = {target}" for step, target in steps.items())
    (dist / "entry_points.txt").write_text(f"[mlsteps.steps]\n{lines}\n")
    return site


def drop_feast_keys(client: Any, project: str) -> int:
    """Delete a Feast project's keys from a Redis client's database; how many there were.

    Feast's Redis key is the serialised entity key followed by the project name. Tests
    that check "this run wrote to Redis" call it first, so keys an interrupted earlier
    run left behind cannot hide the run's writes.
    """
    stale = list(client.scan_iter(match=f"*{project}", count=1000))
    if stale:
        client.delete(*stale)
    return len(stale)


def leaks(text: str, planted: Sequence[str]) -> list[str]:
    """Which of the ``planted`` secret values occur in ``text`` (tests of secret handling)."""
    return [p for p in planted if p in text]


def scan_files(root: Path, planted: Sequence[str], found: dict[str, list[str]]) -> int:
    """Scan every file under ``root`` for ``planted`` values into ``found``; return how many were read."""
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file():
            scanned += 1
            hits = leaks(path.read_bytes().decode("utf-8", errors="replace"), planted)
            if hits:
                found[str(path)] = hits
    return scanned


def scan_database(
    url: str, label: str, planted: Sequence[str], found: dict[str, list[str]]
) -> dict[str, int]:
    """Scan every row of every table behind a SQLAlchemy URL into ``found``; return row counts per table."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    counts: dict[str, int] = {}
    try:
        meta = sa.MetaData()
        meta.reflect(bind=engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                rows = conn.execute(sa.select(table)).all()
                counts[table.name] = len(rows)
                for row in rows:
                    hits = leaks(repr(tuple(row)), planted)
                    if hits:
                        found[f"{label} table {table.name}"] = hits
    finally:
        engine.dispose()
    return counts


_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SKIP = re.compile(r"<!-- docs-test: skip \((.*)\) -->")


def doc_code_blocks(page: Path, lang: str) -> list[tuple[str, str | None]]:
    """``(body, skip reason or None)`` of every ``lang`` fenced block of a Markdown page, in order.

    A block is skipped by the docs tests when the line just before its fence is
    ``<!-- docs-test: skip (REASON) -->``.
    """
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != lang:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _SKIP.fullmatch(before.strip())
        found.append((match.group(2), marker.group(1).strip() if marker else None))
    return found


def _root_context(root: Path) -> RunContext:
    from mlsteps.context import RunKey, build_context

    return build_context(RunKey(run_id="check", step="check", pipeline="check"), artifact_root=str(root))


def check_retried_deploy(root: Path, run_id: str, deployment: str, *, step: str = "deploy") -> DeploymentRef:
    """Check what a ``flaky_deploy`` retried by an orchestrator left: one healthy server, reused.

    Attempt 1 started the server and then failed; attempt 2 must have found it live and
    healthy and reused it: lineage shows the failed and the succeeded attempt, the
    deployment history one healthy entry for the run key, and exactly one server runs
    for the deployment (it answers a real prediction). Returns attempt 2's ref.
    """
    from mlsteps.deploy.base import StateFile
    from mlsteps.deploy.local import LocalServer, is_running, predict, serving_example, stray_servers
    from mlsteps.lineage import LineageRecorder
    from mlsteps.refs import DeploymentRef
    from mlsteps.storage import ArtifactStore

    records = [r for r in LineageRecorder(ArtifactStore(root)).records(run_id) if r.run_key.step == step]
    statuses = [(r.run_key.attempt, r.status) for r in records]
    if statuses != [(1, "failed"), (2, "succeeded")] or "worker lost" not in (records[0].error or ""):
        raise AssertionError(f"expected a failed attempt 1 and a succeeded attempt 2, got {statuses}")
    ref = records[1].outputs["deployment"].ref
    if ref.get("status") != "healthy" or ref.get("metadata", {}).get("reused") is not True:
        raise AssertionError(f"attempt 2 did not reuse attempt 1's server: {ref}")
    state_file = StateFile(_root_context(root), deployment)
    state = state_file.load()
    if state is None:
        raise AssertionError(f"no deployment state for {deployment!r} under {root}")
    key = records[1].run_key.idempotency_key
    healthy = [e for e in state.history if e.status == "healthy" and e.details.get("run_key") == key]
    if len(healthy) != 1 or len(state.history) != 1:
        raise AssertionError(f"expected one healthy deploy for {key}, history: {state.history}")
    live = LocalServer.model_validate(state.runtime["live"])
    others = stray_servers(state_file.directory(), keep={live.pid})
    if not is_running(live) or others:
        raise AssertionError(f"expected only the live server {live.pid} running, also found {others}")
    example = serving_example(live.model_path)
    if example is None or state.endpoint is None or not predict(state.endpoint, example):
        raise AssertionError("the live server gave no prediction on the model's input example")
    return DeploymentRef.model_validate(ref)


def stop_deployments(root: Path) -> list[str]:
    """Stop every local deployment under the artifact root ``root`` (test teardown)."""
    from mlsteps.deploy.local import stop_all

    return stop_all(_root_context(root), reason="test teardown")
