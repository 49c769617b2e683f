"""One Dagster multi-asset per spec step: each step output is an asset whose value is its ref.

The asset function only translates: it builds the mlsteps run context from the
Dagster context, calls :func:`mlsteps.execute_step` (which validates, runs and
records lineage) and maps the result back onto Dagster outputs, materialization
metadata and, for gate steps, a blocking asset check.

Asset keys are ``[*key_prefix, step_id, output_name]``, e.g. ``validate/report``;
a step's outputs share one op, named after the step (``[<prefix>__]<step id>``), so
they run together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator  # noqa: TC003 - Dagster resolves the asset function's hints at runtime
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import SecretStr

from mlsteps.context import FEAST_CONNECTION_SECRET, RunKey
from mlsteps.errors import ConfigError, GateFailure
from mlsteps.refs import DatasetRef, DeploymentRef, ModelRef, ModelVersionRef, ReportRef, dump_ref, parse_ref
from mlsteps.step import config_hash, execute_step
from mlsteps_dagster.resources import (
    FEAST_RESOURCE_KEY,
    FEATURISE_STEP,
    MLFLOW_RESOURCE_KEY,
    MLSTEPS_RESOURCE_KEY,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mlsteps.context import RunContext
    from mlsteps.refs import BaseRef
    from mlsteps.spec import PipelineSpec, ResolvedStep
    from mlsteps.step import StepConfig, StepResult
    from mlsteps_dagster.resources import FeastResource, MlflowResource, MlstepsResource

#: Name of the blocking asset check that carries a gate step's verdict.
GATE_CHECK_NAME = "gate"
#: The Dagster ``kinds`` tag every mlsteps asset carries (shown as a badge in the UI).
ASSET_KIND = "mlsteps"
#: Run tag holding what started a run (JSON, e.g. a drift report); steps record it as lineage ``trigger``.
TRIGGER_TAG = "mlsteps/trigger"


def _is_ref(_context: dg.TypeCheckContext, value: object) -> dg.TypeCheck:
    if not isinstance(value, dict):
        return dg.TypeCheck(success=False, description=f"expected a ref dict, got {type(value).__name__}")
    try:
        parse_ref(value)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return dg.TypeCheck(success=False, description=f"not a valid mlsteps ref: {exc}")
    return dg.TypeCheck(success=True)


#: The Dagster type of every mlsteps asset value: a JSON dict that parses as a ref.
MlstepsRef = dg.DagsterType(
    type_check_fn=_is_ref,
    name="MlstepsRef",
    description="An mlsteps artifact reference (a small JSON dict: URI, content hash, metadata).",
    typing_type=dict,
)


def output_key(step_id: str, output: str, key_prefix: Sequence[str] = ()) -> dg.AssetKey:
    """The asset key of one step output: ``[*key_prefix, step_id, output]``."""
    return dg.AssetKey([*key_prefix, step_id, output])


def op_name(step_id: str, key_prefix: Sequence[str] = ()) -> str:
    """The op of a step: its id, prefixed like its assets (``ml__train``) so that two
    pipelines with the same step ids can share a code location."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "__".join([*key_prefix, step_id]))


def gate_output(step: ResolvedStep) -> str | None:
    """The output whose asset carries a gate step's blocking check (its report), if a gate."""
    if not step.step_cls.gate or not step.step_cls.outputs:
        return None
    outputs = step.step_cls.outputs
    reports = [name for name, kind in outputs.items() if kind == "report"]
    return "report" if "report" in outputs else (reports[0] if reports else next(iter(outputs)))


def ref_metadata(ref: BaseRef) -> dict[str, Any]:
    """Materialization metadata for one output ref: the ref itself plus what Dagster can show.

    Uses Dagster's well-known keys where they exist (``dagster/row_count``,
    ``dagster/column_schema``, ``dagster/uri``) so the UI renders them natively.
    """
    md: dict[str, Any] = {
        "mlsteps/ref": dg.MetadataValue.json(dump_ref(ref)),
        "mlsteps/kind": str(getattr(ref, "kind", "ref")),
        "dagster/uri": ref.uri,
    }
    if ref.content_hash:
        md["mlsteps/content_hash"] = ref.content_hash
    if isinstance(ref, DatasetRef):
        md["mlsteps/format"] = ref.format
        if ref.rows is not None:
            md["dagster/row_count"] = dg.MetadataValue.int(ref.rows)
        if ref.columns:
            md["dagster/column_schema"] = dg.TableSchema(
                columns=[dg.TableColumn(name, dtype) for name, dtype in ref.columns.items()]
            )
    elif isinstance(ref, ModelRef):
        md["mlflow/flavour"] = ref.flavour
        if ref.run_id:
            md["mlflow/run_id"] = ref.run_id
        if ref.model_id:
            md["mlflow/model_id"] = ref.model_id
    elif isinstance(ref, ModelVersionRef):
        md["mlflow/registered_model"] = ref.name
        md["mlflow/model_version"] = ref.version
        md["mlflow/aliases"] = dg.MetadataValue.json(list(ref.aliases))
        if ref.source_run_id:
            md["mlflow/run_id"] = ref.source_run_id
    elif isinstance(ref, ReportRef):
        md["mlsteps/passed"] = dg.MetadataValue.bool(ref.passed)
        md["mlsteps/summary"] = dg.MetadataValue.json(ref.summary)
        if ref.html_uri:
            md["mlsteps/html_uri"] = dg.MetadataValue.path(ref.html_uri)
    elif isinstance(ref, DeploymentRef):
        md["mlsteps/target"] = ref.target
        md["mlsteps/status"] = ref.status
        md["mlsteps/traffic"] = dg.MetadataValue.json(ref.traffic)
        if ref.endpoint:
            md["mlsteps/endpoint"] = dg.MetadataValue.url(ref.endpoint)
    return md


def run_metadata(ctx: RunContext, step: ResolvedStep, metrics: dict[str, float]) -> dict[str, Any]:
    """Metadata shared by every output of one step run: lineage link, run key and metrics.

    Each metric is its own float entry (``metric/<name>``) so Dagster plots it over time.
    """
    md: dict[str, Any] = {
        "mlsteps/lineage_record": ctx.record_id,
        "mlsteps/run_key": str(ctx.run_key),
        "mlsteps/step_type": step.step_cls.name,
        "mlsteps/step_version": step.step_cls.version,
        "mlsteps/config_hash": config_hash(step.config),
        "mlsteps/artifact_root": ctx.artifact_root,
    }
    for name, value in sorted(metrics.items()):
        md[f"metric/{name}"] = dg.MetadataValue.float(float(value))
    return md


def build_step_asset(
    spec: PipelineSpec,
    step_id: str,
    *,
    key_prefix: Sequence[str] = (),
    group_name: str | None = None,
    op_tags: Mapping[str, Any] | None = None,
) -> dg.AssetsDefinition:
    """The multi-asset of one spec step: one asset per output, a blocking check if a gate.

    Args:
        spec: The loaded pipeline spec.
        step_id: The step's id in the spec.
        key_prefix: Prepended to every asset key.
        group_name: The Dagster asset group of the step's assets.
        op_tags: Extra tags of the step's op, e.g. ``dagster-k8s/config`` for its pod.

    Returns:
        A multi-asset whose op is named after the step and runs it through
        :func:`mlsteps.execute_step`.
    """
    step = spec.steps[step_id]
    step_cls = step.step_cls
    prefix = tuple(key_prefix)
    gate_out = gate_output(step)
    code_version = (
        f"{step_cls.name}@{step_cls.version}:{config_hash(step.config).removeprefix('sha256:')[:16]}"
    )
    gated = gate_out is not None
    outs = {
        name: dg.AssetOut.from_spec(
            dg.AssetSpec(
                key=output_key(step_id, name, prefix),
                description=f"Output '{name}' ({kind} ref) of step '{step_id}' ({step_cls.name}). "
                f"{step_cls.description}".strip(),
                group_name=group_name,
                code_version=code_version,
                kinds={ASSET_KIND},
                tags={"mlsteps/step": step_id, "mlsteps/kind": kind},
                metadata={"mlsteps/step_type": step_cls.name, "mlsteps/pipeline": spec.name},
            ),
            dagster_type=MlstepsRef,
            # A failed gate materializes only its report; its other outputs are skipped.
            is_required=not gated,
        )
        for name, kind in step_cls.outputs.items()
    }
    check_specs = []
    if gate_out is not None:
        check_specs.append(
            dg.AssetCheckSpec(
                GATE_CHECK_NAME,
                asset=output_key(step_id, gate_out, prefix),
                blocking=True,
                description=f"Quality gate of step '{step_id}': when it fails, nothing downstream "
                "materializes.",
            )
        )
    ins = {name: dg.AssetIn(key=output_key(up, out, prefix)) for name, (up, out) in step.inputs.items()}
    retries = step.spec.retries
    resource_keys = {MLSTEPS_RESOURCE_KEY, MLFLOW_RESOURCE_KEY}
    if step_cls.name == FEATURISE_STEP:
        resource_keys.add(FEAST_RESOURCE_KEY)

    def run_step(context: AssetExecutionContext, **inputs: Any) -> Iterator[Any]:
        ctx = step_context(context, spec, step_id)
        try:
            config = step_config(context, step)
            if step_cls.name == FEATURISE_STEP:
                feast: FeastResource = getattr(context.resources, FEAST_RESOURCE_KEY)
                if feast.connection_string is not None:
                    # The config names ${feast_online_store}; the step fills it from ctx.secrets.
                    ctx.secrets[FEAST_CONNECTION_SECRET] = SecretStr(feast.connection_string)
            result = execute_step(step_cls, ctx, config, inputs)
        except GateFailure as exc:
            yield from _gate_failed(ctx, step, exc, prefix, gate_out)
            return
        except ConfigError as exc:
            # A wrong config or wiring does not get better on retry.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        yield from _succeeded(ctx, step, result, prefix, gate_out)

    # Dagster checks the raw annotation of ``context``, which postponed evaluation
    # (``from __future__ import annotations``) leaves as a string.
    run_step.__annotations__["context"] = AssetExecutionContext
    return dg.multi_asset(
        name=op_name(step_id, prefix),
        outs=outs,
        check_specs=check_specs or None,
        ins=ins,
        required_resource_keys=resource_keys,
        retry_policy=dg.RetryPolicy(max_retries=retries) if retries else None,
        description=step_cls.description or None,
        op_tags={**(op_tags or {}), "mlsteps/step_type": step_cls.name},
    )(run_step)


def step_config(context: AssetExecutionContext, step: ResolvedStep) -> StepConfig:
    """The step's config from the spec, with the deployment's resource overrides applied.

    Only ``featurise`` has overrides (:class:`~mlsteps_dagster.FeastResource`); the
    result is validated again, so a bad override fails like a bad spec.
    """
    if step.step_cls.name != FEATURISE_STEP:
        return step.config
    feast: FeastResource = getattr(context.resources, FEAST_RESOURCE_KEY)
    base = step.config.model_dump(mode="json", exclude_unset=True)
    updated = feast.overrides(base)
    return step.config if updated == base else step.step_cls.parse_config(updated)


def step_context(context: AssetExecutionContext, spec: PipelineSpec, step_id: str) -> RunContext:
    """The mlsteps run context for ``step_id`` from Dagster's context and resources.

    The run key is ``dagster/<pipeline>/<run id>/<step id>`` (see :func:`run_and_attempt`
    for the run id and attempt); everything else comes from the spec, as in the
    local runner, with the resources' overrides. A run started by a sensor carries
    its reason in the ``mlsteps/trigger`` run tag, recorded as the lineage ``trigger``.
    """
    mlsteps_res: MlstepsResource = getattr(context.resources, MLSTEPS_RESOURCE_KEY)
    mlflow_res: MlflowResource = getattr(context.resources, MLFLOW_RESOURCE_KEY)
    run_id, attempt = run_and_attempt(context)
    run_key = RunKey(orchestrator="dagster", pipeline=spec.name, run_id=run_id, step=step_id, attempt=attempt)
    ctx = spec.context(
        step_id, run_key, artifact_root=mlsteps_res.resolve_root(spec), mlflow=mlflow_res.settings(spec)
    )
    ctx.logger = context.log
    ctx.extra_tags = {**ctx.extra_tags, "dagster.run_id": context.run.run_id}
    trigger = context.run.tags.get(TRIGGER_TAG)
    if trigger:
        try:
            parsed = json.loads(trigger)
        except ValueError:
            parsed = None
        # A hand-written tag that is not a JSON object is still worth recording.
        ctx.set_trigger(parsed if isinstance(parsed, dict) else {"kind": "tag", "value": trigger})
    return ctx


def run_and_attempt(context: AssetExecutionContext) -> tuple[str, int]:
    """The mlsteps run id and attempt number of the running step.

    A plain run: its Dagster run id, and Dagster's retry number plus one. A
    re-execution (Dagster's *re-execute*, e.g. from failure after a worker was lost)
    is a new Dagster run of the same pipeline run, so it takes its root run's id, and
    the attempt goes on counting from the attempts of this step in the runs it
    re-executes. A retry then finds, by its run key, the model version or deployment
    an attempt killed before it could return made; and lineage shows that attempt's
    ``started`` record as interrupted.
    """
    run = context.run
    attempt = context.retry_number + 1
    if run.parent_run_id is None:
        return run.run_id, attempt
    step_key = str(context.op_execution_context.op_handle)  # the step key of an op outside graphs
    started = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED}
    parent_id: str | None = run.parent_run_id
    while parent_id is not None:
        attempt += sum(
            1 for e in context.instance.all_logs(parent_id, of_type=started) if e.step_key == step_key
        )
        parent = context.instance.get_run_by_id(parent_id)
        parent_id = parent.parent_run_id if parent is not None else None
    return run.root_run_id or run.run_id, attempt


def _output(ref: BaseRef, key: dg.AssetKey, shared: dict[str, Any]) -> dg.MaterializeResult[dict[str, Any]]:
    """The materialization of one output: the ref as the asset's value, plus metadata.

    The data version is the ref's content fingerprint, so Dagster sees unchanged
    content as unchanged data.
    """
    return dg.MaterializeResult(
        asset_key=key,
        value=dump_ref(ref),
        metadata={**ref_metadata(ref), **shared},
        data_version=dg.DataVersion(ref.fingerprint()),
    )


def _succeeded(
    ctx: RunContext,
    step: ResolvedStep,
    result: StepResult,
    prefix: tuple[str, ...],
    gate_out: str | None,
) -> Iterator[Any]:
    shared = run_metadata(ctx, step, result.metrics)
    for name in step.step_cls.outputs:
        yield _output(result.outputs[name], output_key(step.id, name, prefix), shared)
    if gate_out is not None:
        passed = result.passed is not False
        yield dg.AssetCheckResult(
            passed=passed,
            asset_key=output_key(step.id, gate_out, prefix),
            check_name=GATE_CHECK_NAME,
            metadata=_check_metadata(ctx, result.outputs.get(gate_out), [] if passed else [result.message]),
            description=result.message or ("gate passed" if passed else "gate failed"),
        )


def _gate_failed(
    ctx: RunContext,
    step: ResolvedStep,
    exc: GateFailure,
    prefix: tuple[str, ...],
    gate_out: str | None,
) -> Iterator[Any]:
    """A failed gate: publish its report (if any) and fail the blocking check; no exception."""
    if gate_out is None:  # pragma: no cover - only gate steps raise GateFailure by contract
        raise exc
    ctx.logger.warning("%s", exc)
    report = exc.report if exc.report is not None and gate_out in step.step_cls.outputs else None
    if report is not None:
        yield _output(report, output_key(step.id, gate_out, prefix), run_metadata(ctx, step, {}))
    yield dg.AssetCheckResult(
        passed=False,
        asset_key=output_key(step.id, gate_out, prefix),
        check_name=GATE_CHECK_NAME,
        metadata=_check_metadata(ctx, report, exc.reasons),
        description=str(exc),
    )


def _check_metadata(ctx: RunContext, report: BaseRef | None, reasons: list[str]) -> dict[str, Any]:
    md: dict[str, Any] = {
        "mlsteps/lineage_record": ctx.record_id,
        "mlsteps/reasons": dg.MetadataValue.json(list(reasons)),
    }
    if report is not None:
        md["mlsteps/report_uri"] = dg.MetadataValue.path(report.uri)
        if isinstance(report, ReportRef):
            md["mlsteps/summary"] = dg.MetadataValue.json(report.summary)
    return md
