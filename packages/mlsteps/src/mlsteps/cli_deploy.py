"""``mlsteps deploy``: run, roll back, inspect, stop and render model deployments by hand.

The deployment comes from a spec's ``deploy`` step (``--spec``, ``--step``) or
from an explicit ``--config``. Changes (``run``, ``rollback``, ``stop``) go
through the deploy step and :func:`mlsteps.step.execute_step`, so each one is a
lineage record naming who did it, to which version, when and why.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mlsteps.errors import ConfigError, MlstepsError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlsteps.context import RunContext
    from mlsteps.deploy.base import DeploymentState
    from mlsteps.refs import BaseRef
    from mlsteps.spec import PipelineSpec
    from mlsteps.steps.deploy import DeployConfig


def _fail(exc: MlstepsError) -> NoReturn:
    from mlsteps.cli import _fail as fail

    fail(exc)


@dataclass
class _Where:
    """A deploy step's config and how to build its context."""

    config: dict[str, Any]
    step_id: str
    pipeline: str
    spec: PipelineSpec | None
    artifact_root: str | None
    tracking_uri: str | None

    def ctx(self, command: str) -> RunContext:
        from mlsteps.context import MlflowSettings, RunKey, build_context, new_run_id

        run_key = RunKey(orchestrator="cli", pipeline=self.pipeline, run_id=new_run_id(), step=self.step_id)
        if self.spec is not None:
            mlflow = self.spec.model.defaults.mlflow
            if self.tracking_uri:
                mlflow = mlflow.model_copy(update={"tracking_uri": self.tracking_uri})
            return self.spec.context(self.step_id, run_key, artifact_root=self.artifact_root, mlflow=mlflow)
        return build_context(
            run_key,
            artifact_root=self.artifact_root or ".mlsteps",
            mlflow=MlflowSettings(tracking_uri=self.tracking_uri),
        )

    def parsed(self, **overrides: Any) -> DeployConfig:
        from mlsteps.steps.deploy import DeployStep

        raw = {**self.config, **{k: v for k, v in overrides.items() if v is not None}}
        file = str(self.spec.path) if self.spec is not None and self.spec.path else None
        return DeployStep.parse_config(raw, file=file)


def _where(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
) -> _Where:
    if (spec_path is None) == (config_arg is None):
        raise ConfigError("pass either --spec (and optionally --step) or --config")
    if config_arg is not None:
        from mlsteps.cli import _json_arg

        config = _json_arg(config_arg, "--config")
        if not isinstance(config, dict):
            raise ConfigError("--config: expected a mapping of deploy step options")
        return _Where(config, "deploy", "deploy", None, artifact_root, tracking_uri)
    from mlsteps.spec import load_spec

    assert spec_path is not None
    spec = load_spec(spec_path)
    found = [sid for sid, s in spec.steps.items() if s.step_cls.name == "deploy"]
    if step_id is not None:
        if step_id not in found:
            raise ConfigError(f"{spec.path}: {step_id!r} is not a deploy step; deploy steps: {found}")
    elif len(found) != 1:
        raise ConfigError(
            f"{spec.path}: {'no deploy step' if not found else f'several deploy steps {found}'}; "
            "pick one with --step"
        )
    else:
        step_id = found[0]
    config = spec.steps[step_id].config.model_dump(mode="json", exclude_unset=True)
    return _Where(config, step_id, spec.name, spec, artifact_root, tracking_uri)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every ``mlsteps deploy`` command takes to find its deployment."""
    options = [
        click.option(
            "--spec", "spec_path", type=click.Path(path_type=Path), help="Pipeline spec with a deploy step."
        ),
        click.option(
            "--step", "step_id", help="The deploy step's id (default: the spec's only deploy step)."
        ),
        click.option(
            "--config", "config_arg", help="Deploy step config as JSON, or @file (instead of --spec)."
        ),
        click.option(
            "--artifact-root", help="Override the artifact root (default: the spec's, else .mlsteps)."
        ),
        click.option("--tracking-uri", help="Override the MLflow tracking URI."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _actor(actor: str | None, command: str) -> str:
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user} (mlsteps deploy {command})"


def _execute(where: _Where, command: str, inputs: dict[str, Any], **overrides: Any) -> BaseRef:
    """Run the deploy step with ``overrides``; its deployment ref (lineage records the call)."""
    from mlsteps.step import execute_step
    from mlsteps.steps.deploy import DeployStep

    config = where.parsed(**overrides)
    result = execute_step(DeployStep, where.ctx(command), config, inputs)
    click.echo(result.message)
    return result.outputs["deployment"]


def _upstream_model_version(where: _Where) -> dict[str, Any]:
    """The ``model_version`` the wired upstream step (e.g. ``register``) last produced, from lineage."""
    if where.spec is None:
        return {}
    wiring = where.spec.steps[where.step_id].inputs.get("model_version")
    if wiring is None:
        return {}
    from mlsteps.lineage import LineageRecorder

    upstream, output = wiring
    ctx = where.ctx("run")
    assert ctx.lineage is not None
    for record in reversed(LineageRecorder(ctx.store).records()):
        link = record.outputs.get(output)
        if record.run_key.step == upstream and record.status in ("succeeded", "cached") and link:
            return {"model_version": link.ref}
    raise ConfigError(
        f"no model to deploy: {upstream}.{output} has not been produced under {ctx.store.root}; "
        "run the pipeline first or pass --model models:/NAME@ALIAS"
    )


@click.group("deploy")
def deploy_group() -> None:
    """Deploy, roll back, inspect, stop and render model deployments."""


@deploy_group.command("run")
@_common
@click.option(
    "--model", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the step's model or input)."
)
@click.option("--force", is_flag=True, default=None, help="Deploy even if the evaluation did not pass.")
@click.option("--dry-run", is_flag=True, default=None, help="Check everything, change nothing.")
@click.option("--reason", help="Why: recorded in the history and lineage.")
@click.option("--actor", help="Who (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment ref as JSON.")
def run_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    model: str | None,
    force: bool | None,
    dry_run: bool | None,
    reason: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Deploy a model version (blue/green on the local target)."""
    try:
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        inputs = {} if model or where.config.get("model") else _upstream_model_version(where)
        ref = _execute(
            where,
            "run",
            inputs,
            action="deploy",
            model=model,
            force=force,
            dry_run=dry_run,
            reason=reason,
            actor=_actor(actor, "run"),
        )
    except MlstepsError as exc:
        _fail(exc)
    if as_json:
        click.echo(ref.model_dump_json(indent=2))


@deploy_group.command("rollback")
@_common
@click.option("--to-version", help="The version to serve again (default: the previous healthy one).")
@click.option("--reason", help="Why: recorded in the history and lineage.")
@click.option("--actor", help="Who (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment ref as JSON.")
def rollback_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    to_version: str | None,
    reason: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Serve the previous healthy version (or --to-version) again."""
    try:
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        # A rollback takes no model: drop the deploy-time model and flags from the step's config.
        for key in ("model", "force", "dry_run"):
            where.config.pop(key, None)
        ref = _execute(
            where,
            "rollback",
            {},
            action="rollback",
            to_version=to_version,
            reason=reason,
            actor=_actor(actor, "rollback"),
        )
    except MlstepsError as exc:
        _fail(exc)
    if as_json:
        click.echo(ref.model_dump_json(indent=2))


@deploy_group.command("stop")
@_common
@click.option("--reason", help="Why: recorded in the history and lineage.")
@click.option("--actor", help="Who (default: the OS user).")
def stop_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    reason: str | None,
    actor: str | None,
) -> None:
    """Stop serving the deployment (local target: stop its server process)."""
    try:
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        for key in ("model", "force", "dry_run"):
            where.config.pop(key, None)
        _execute(where, "stop", {}, action="stop", reason=reason, actor=_actor(actor, "stop"))
    except MlstepsError as exc:
        _fail(exc)


@deploy_group.command("status")
@_common
@click.option("--history", "history_rows", default=10, show_default=True, help="History entries to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded state as JSON.")
def status_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    history_rows: int,
    as_json: bool,
) -> None:
    """Show what the deployment serves, where, and its recent history."""
    from mlsteps.steps.deploy import build_target

    try:
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        config = where.parsed()
        ctx = where.ctx("status")
        state = build_target(config).status(ctx, config.name)
        if state is None:
            raise ConfigError(f"deployment {config.name!r} was never deployed under {ctx.store.root}")
    except MlstepsError as exc:
        _fail(exc)
    if as_json:
        click.echo(state.model_dump_json(indent=2))
        return
    _print_state(state, history_rows)


def _print_state(state: DeploymentState, rows: int) -> None:
    from rich.table import Table

    from mlsteps.cli import _console

    console = _console()
    live = state.runtime.get("live") or {}
    serving = f"{state.model_name} v{state.live_version}" if state.live_version else "nothing"
    console.print(f"[bold]{state.deployment}[/] ({state.target}): {serving}")
    if state.endpoint:
        console.print(f"  endpoint: {state.endpoint}", markup=False)
    if state.traffic:
        console.print("  traffic: " + ", ".join(f"v{v} {p}%" for v, p in state.traffic.items()))
    if live.get("pid"):
        running = "[green]running[/]" if live.get("running") else "[red]NOT running[/]"
        console.print(f"  process: pid {live['pid']} {running}, log {live.get('log')}")
    table = Table("at (UTC)", "action", "version", "from", "status", "actor", "reason", title="history")
    for entry in state.history[-rows:]:
        table.add_row(
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.action,
            entry.version or "",
            entry.previous_version or "",
            entry.status,
            entry.actor,
            entry.reason or str(entry.details.get("error") or ""),
        )
    console.print(table)


@deploy_group.command("predict")
@_common
@click.option("--input-example", is_flag=True, help="Send the served model's own input example.")
@click.option("--data", "data_arg", help="Request body as JSON (MLflow scoring format), or @file.")
def predict_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    input_example: bool,
    data_arg: str | None,
) -> None:
    """Send one request to the deployment's endpoint and print the predictions."""
    from mlsteps.deploy.local import predict, serving_example
    from mlsteps.steps.deploy import build_target

    try:
        if input_example == (data_arg is not None):
            raise ConfigError("pass exactly one of --input-example and --data")
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        config = where.parsed()
        ctx = where.ctx("predict")
        state = build_target(config).status(ctx, config.name)
        if state is None or not state.endpoint:
            raise ConfigError(f"deployment {config.name!r} serves nothing under {ctx.store.root}")
        if data_arg is not None:
            from mlsteps.cli import _json_arg

            payload = json.dumps(_json_arg(data_arg, "--data")).encode()
        else:
            model_path = (state.runtime.get("live") or {}).get("model_path")
            example = serving_example(model_path) if model_path else None
            if example is None:
                raise ConfigError(
                    f"v{state.live_version} has no input example here; pass the request with --data"
                )
            payload = example
        predictions = predict(state.endpoint, payload)
    except MlstepsError as exc:
        _fail(exc)
    click.echo(f"{state.model_name} v{state.live_version} at {state.endpoint}")
    click.echo(f"request:     {json.dumps(json.loads(payload), separators=(',', ':'))[:400]}")
    click.echo(f"predictions: {json.dumps(predictions)}")


@deploy_group.command("render")
@_common
@click.option(
    "--model", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the step's model or input)."
)
@click.option("--force", is_flag=True, default=None, help="Render even if the evaluation did not pass.")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), help="Write one YAML file per manifest here."
)
def render_command(
    spec_path: Path | None,
    step_id: str | None,
    config_arg: str | None,
    artifact_root: str | None,
    tracking_uri: str | None,
    model: str | None,
    force: bool | None,
    out: Path | None,
) -> None:
    """Write the manifests a deploy would apply, without applying them (for GitOps)."""
    import yaml

    from mlsteps.deploy.base import Target
    from mlsteps.refs import parse_ref
    from mlsteps.steps.deploy import build_target, prepare_request

    try:
        where = _where(spec_path, step_id, config_arg, artifact_root, tracking_uri)
        config = where.parsed(model=model, force=force, action="deploy")
        target = build_target(config)
        if type(target).render is Target.render:
            click.echo(f"the {target.name!r} target runs a process: it has no manifests to render")
            return
        inputs = {} if config.model else _upstream_model_version(where)
        upstream = parse_ref(inputs["model_version"]) if inputs else None
        request = prepare_request(where.ctx("render"), config, upstream, actor=_actor(None, "render"))
        manifests = target.render(request)
    except MlstepsError as exc:
        _fail(exc)
    if out is None:
        click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for i, manifest in enumerate(manifests, 1):
        kind = str(manifest.get("kind", "object")).lower()
        name = str((manifest.get("metadata") or {}).get("name", i))
        path = out / f"{i:02d}-{kind}-{name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        click.echo(str(path))
