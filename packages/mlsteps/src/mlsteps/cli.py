"""The ``mlsteps`` command line.

Exit codes: 0 success, 1 a step or gate failed, 2 a usage or configuration error.
``mlsteps step`` is the entry point a Kubernetes pod runs, so every orchestrator
can push a step into a pod and read its result back as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mlsteps.errors import ConfigError, GateFailure, MlstepsError

if TYPE_CHECKING:
    from rich.console import Console

    from mlsteps.lineage import LineageNode, LineageRecord
    from mlsteps.runner import RunSummary, StepOutcome

STATUS_STYLE = {
    "succeeded": "[green]ok[/]",
    "cached": "[cyan]cached[/]",
    "failed": "[red]failed[/]",
    "gate_failed": "[red]gate failed[/]",
    "skipped": "[yellow]skipped[/]",
}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(exc: MlstepsError) -> NoReturn:
    err = _console(stderr=True)
    label = "configuration error" if isinstance(exc, ConfigError) else "error"
    err.print(f"[bold red]{label}:[/] ", end="")
    err.print(str(exc), markup=False, soft_wrap=True)
    sys.exit(exc.exit_code)


def _json_arg(value: str, what: str) -> Any:
    """Parse a JSON argument, or ``@file`` holding JSON or YAML."""
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path}: {exc}") from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{what}: {path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: expected JSON (or @file), {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlsteps", prog_name="mlsteps")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Portable MLOps steps: run a pipeline spec, one step, or inspect lineage."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("spec_path", type=click.Path(path_type=Path))
@click.option("--no-cache", is_flag=True, help="Run every step even if an identical run is cached.")
@click.option("--run-id", help="Run id (default: a new timestamped id).")
@click.option("--only", multiple=True, help="Run only this step (and what it needs); repeatable.")
@click.option("--artifact-root", help="Override defaults.artifact_root.")
@click.option("--tracking-uri", help="Override the MLflow tracking URI.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(
    spec_path: Path,
    no_cache: bool,
    run_id: str | None,
    only: tuple[str, ...],
    artifact_root: str | None,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Run a pipeline spec locally, in dependency order."""
    from mlsteps.runner import LocalRunner
    from mlsteps.spec import load_spec

    try:
        spec = load_spec(spec_path)
        mlflow = spec.model.defaults.mlflow
        if tracking_uri:
            mlflow = mlflow.model_copy(update={"tracking_uri": tracking_uri})
        console = _console(stderr=as_json)
        with _Progress(console, spec.order) as progress:
            runner = LocalRunner(
                spec,
                run_id=run_id,
                use_cache=not no_cache,
                artifact_root=artifact_root,
                mlflow=mlflow,
                listener=progress.update,
            )
            summary = runner.run(list(only) or None)
    except MlstepsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(_summary_dict(summary), indent=2))
    else:
        _print_summary(console, summary)
    sys.exit(0 if summary.ok else 1)


class _Progress:
    """Rich live progress for a run: one line per step as it starts and ends."""

    def __init__(self, console: Console, order: list[str]) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=len(order))

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event: str, step_id: str, outcome: StepOutcome | None) -> None:
        if event == "start":
            self.progress.update(self.task, description=f"running [bold]{step_id}[/]")
            return
        self.progress.advance(self.task)
        status = STATUS_STYLE.get(event, event)
        took = f" in {outcome.duration_s:.1f}s" if outcome and event != "skipped" else ""
        self.console.print(f"  {status:<24} {step_id}{took}")
        if outcome and outcome.error and event != "skipped":
            self.console.print(f"    {outcome.error}", markup=False, style="red")


def _summary_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "pipeline": summary.pipeline,
        "run_id": summary.run_id,
        "artifact_root": summary.artifact_root,
        "ok": summary.ok,
        "steps": [
            {
                "step": o.step_id,
                "type": o.step_type,
                "status": o.status,
                "duration_s": round(o.duration_s, 3),
                "metrics": o.result.metrics if o.result else {},
                "outputs": o.result.to_dict()["outputs"] if o.result else {},
                "error": o.error,
            }
            for o in summary.outcomes
        ],
    }


def _print_summary(console: Console, summary: RunSummary) -> None:
    from rich.table import Table

    table = Table(title=f"{summary.pipeline} - run {summary.run_id}", title_justify="left")
    for col in ("step", "type", "status", "time", "metrics", "outputs"):
        table.add_column(col, overflow="fold")
    for o in summary.outcomes:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted((o.result.metrics if o.result else {}).items()))
        outputs = ", ".join(sorted(o.result.outputs)) if o.result else ""
        table.add_row(
            o.step_id, o.step_type, STATUS_STYLE[o.status], f"{o.duration_s:.1f}s", metrics, outputs
        )
    console.print(table)
    cached = sum(o.status == "cached" for o in summary.outcomes)
    if cached:
        console.print(
            f"{cached} step(s) reused from cache (inputs and config unchanged); --no-cache to rerun."
        )
    console.print(f"artifacts and lineage: {summary.artifact_root}")
    if not summary.ok:
        console.print("[bold red]pipeline failed[/]")


@main.command()
@click.argument("step_name")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    help="Take STEP_NAME as a step id of this spec: its type, config, artifact root and MLflow defaults.",
)
@click.option("--config", "config_arg", default=None, help="Step config as JSON, or @file (.json/.yaml).")
@click.option("--input", "input_args", multiple=True, help="NAME=REF_JSON or NAME=@file; repeatable.")
@click.option("--artifact-root", default=None, help="Artifact root [default: the spec's, else .mlsteps].")
@click.option("--run-id", help="The orchestrator's run id (default: new).")
@click.option("--step-id", help="The step's id in the pipeline (default: STEP_NAME).")
@click.option("--pipeline", default="pipeline", show_default=True)
@click.option("--orchestrator", default="local", show_default=True)
@click.option("--attempt", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
@click.option("--output", type=click.Path(path_type=Path), help="Also write the result JSON here.")
def step(
    step_name: str,
    spec_path: Path | None,
    config_arg: str | None,
    input_args: tuple[str, ...],
    artifact_root: str | None,
    run_id: str | None,
    step_id: str | None,
    pipeline: str,
    orchestrator: str,
    attempt: int,
    tracking_uri: str | None,
    output: Path | None,
) -> None:
    """Run one step from JSON config and input refs; print its result as JSON.

    This is what a pod runs when an orchestrator pushes a step into Kubernetes:
    with ``--spec``, the step is taken from the spec baked into the image, so the
    pod runs exactly what ``mlsteps run`` would, with the refs given by ``--input``.
    """
    from mlsteps.context import MlflowSettings, RunKey, build_context, new_run_id
    from mlsteps.registry import get_step
    from mlsteps.step import execute_step

    try:
        inputs: dict[str, Any] = {}
        for item in input_args:
            name, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"--input: expected NAME=REF_JSON, got {item!r}")
            inputs[name] = _json_arg(value, f"--input {name}")
        explicit = _json_arg(config_arg, "--config") if config_arg is not None else None
        run_key = RunKey(
            orchestrator=orchestrator,
            pipeline=pipeline,
            run_id=run_id or new_run_id(),
            step=step_id or step_name,
            attempt=attempt,
        )
        mlflow = MlflowSettings(tracking_uri=tracking_uri)
        if spec_path is not None:
            from mlsteps.spec import load_spec

            spec = load_spec(spec_path)
            resolved = spec.steps.get(step_name)
            if resolved is None:
                raise ConfigError(
                    f"spec has no step {step_name!r}; expected one of {sorted(spec.steps)}",
                    file=str(spec.path),
                )
            cls = resolved.step_cls
            config: Any = explicit if explicit is not None else resolved.config
            ctx = spec.context(
                step_name,
                run_key,
                artifact_root=artifact_root,
                mlflow=spec.model.defaults.mlflow.merged(mlflow),
            )
        else:
            cls = get_step(step_name)
            config = explicit if explicit is not None else {}
            ctx = build_context(run_key, artifact_root=artifact_root or ".mlsteps", mlflow=mlflow)
        result = execute_step(cls, ctx, config, inputs)
        payload = {"status": "succeeded", **result.to_dict()}
    except GateFailure as exc:
        payload = {
            "status": "gate_failed",
            "error": str(exc),
            "reasons": exc.reasons,
            "outputs": {"report": exc.report.model_dump(mode="json")} if exc.report else {},
        }
        _emit(payload, output)
        _fail(exc)
    except MlstepsError as exc:
        _fail(exc)
    _emit(payload, output)


def _emit(payload: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True)
    if output:
        from mlsteps.storage import atomic_write_bytes

        atomic_write_bytes(output, text.encode())
    click.echo(text)


@main.command()
@click.argument("spec_path", type=click.Path(path_type=Path))
def check(spec_path: Path) -> None:
    """Validate a pipeline spec without running it."""
    from mlsteps.spec import load_spec

    try:
        spec = load_spec(spec_path)
    except MlstepsError as exc:
        _fail(exc)
    click.echo(f"{spec_path}: ok ({len(spec.steps)} steps: {' -> '.join(spec.order)})")


@main.command("steps")
def list_steps() -> None:
    """List the available step types (built in and from the ``mlsteps.steps`` entry points)."""
    from rich.table import Table

    from mlsteps.registry import available_steps, get_step

    table = Table("step", "inputs", "outputs", "description")
    for name in sorted(available_steps()):
        try:
            cls = get_step(name)
        except MlstepsError as exc:
            table.add_row(name, "", "", f"[red]{exc}[/]")
            continue
        ins = ", ".join(f"{k}{'' if v.required else '?'}:{v.kind}" for k, v in cls.inputs.items())
        outs = ", ".join(f"{k}:{v}" for k, v in cls.outputs.items())
        table.add_row(name, ins, outs, cls.description)
    _console().print(table)


@main.command()
@click.option("--root", default=None, help="Artifact root (default: from --spec, else ./.mlsteps).")
@click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), help="Take the artifact root from a spec."
)
@click.option("--run", "run_id", help="Show one run (default: the latest).")
@click.option("--model", help="Walk back from a registered model: NAME or NAME:VERSION.")
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
def lineage(
    root: str | None, spec_path: Path | None, run_id: str | None, model: str | None, as_json: bool
) -> None:
    """Show lineage: a run's step records, or a model's history back to its data."""
    from mlsteps.lineage import LineageRecorder, find_model_version, trace
    from mlsteps.storage import ArtifactStore

    try:
        if root is None and spec_path is not None:
            from mlsteps.spec import load_spec

            spec = load_spec(spec_path)
            root_path = Path(spec.model.defaults.artifact_root)
            root = str(root_path if root_path.is_absolute() else spec.base_dir / root_path)
        recorder = LineageRecorder(ArtifactStore(root or ".mlsteps"))
        records = recorder.records()
        if not records:
            raise ConfigError(f"no lineage records under {recorder.store.root}")
        console = _console()
        if model:
            name, _, version = model.partition(":")
            start = find_model_version(records, name, version or None)
            if start is None:
                raise ConfigError(f"no lineage record produced model {model!r} under {recorder.store.root}")
            node = trace(records, start)
            if as_json:
                click.echo(node.model_dump_json(indent=2))
            else:
                console.print(_tree(node))
            return
        run_id = run_id or records[-1].run_key.run_id
        selected = [r for r in records if r.run_key.run_id == run_id]
        if not selected:
            raise ConfigError(f"no lineage records for run {run_id!r}; runs: {recorder.runs()}")
        if as_json:
            click.echo(json.dumps([r.model_dump(mode="json") for r in selected], indent=2))
        else:
            console.print(_run_tree(run_id, selected))
    except MlstepsError as exc:
        _fail(exc)


@main.command()
@click.argument("model_uri")
@click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), help="Take root, MLflow and paths from a spec."
)
@click.option("--root", default=None, help="Artifact root (default: from --spec, else ./.mlsteps).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: from --spec, else the embedded SQLite).")
def reproduce(model_uri: str, spec_path: Path | None, root: str | None, tracking_uri: str | None) -> None:
    """Re-run what produced MODEL_URI (models:/NAME@ALIAS or models:/NAME/VERSION) and compare metrics."""
    from rich.table import Table

    from mlsteps.context import MlflowSettings
    from mlsteps.reproduce import reproduce as run_reproduce

    try:
        from mlsteps.backends.mlflow import parse_model_uri

        parsed = parse_model_uri(model_uri, field="MODEL_URI")
        name, version, alias = parsed.name, parsed.version or "", parsed.alias
        base_dir = Path.cwd()
        mlflow = MlflowSettings()
        if spec_path is not None:
            from mlsteps.spec import load_spec

            spec = load_spec(spec_path)
            root = root or spec.artifact_root()
            base_dir = spec.base_dir
            mlflow = spec.model.defaults.mlflow
        root = str(Path(root or ".mlsteps").resolve()) if "://" not in (root or "") else str(root)
        if tracking_uri:
            mlflow = mlflow.model_copy(update={"tracking_uri": tracking_uri})
        if alias is not None:
            version = _resolve_alias(name, alias, mlflow, root)
        result = run_reproduce(
            artifact_root=root, model=name, version=version, base_dir=base_dir, mlflow=mlflow
        )
    except MlstepsError as exc:
        _fail(exc)
    console = _console()
    table = Table(title=f"reproducing {name} v{version} (run {result.summary.run_id})", title_justify="left")
    for col in ("step", "metric", "recorded", "reproduced", "match"):
        table.add_column(col)
    for c in result.checks:
        got = "-" if c.reproduced is None else f"{c.reproduced:.6g}"
        table.add_row(
            c.step, c.metric, f"{c.recorded:.6g}", got, "[green]yes[/]" if c.matches else "[red]NO[/]"
        )
    console.print(table)
    for o in result.summary.outcomes:
        if o.error:
            console.print(f"[red]{o.step_id}: {o.error}[/]", markup=True)
    console.print(
        "[green]reproduced: every metric matches[/]" if result.ok else "[bold red]not reproduced[/]"
    )
    sys.exit(0 if result.ok else 1)


@main.command("suggest-expectations")
@click.argument("data")
@click.option("--max-set-size", default=20, show_default=True, type=click.IntRange(min=1))
def suggest_expectations(data: str, max_set_size: int) -> None:
    """Profile DATA (parquet or CSV) into starter validate expectations, printed as YAML."""
    import yaml

    from mlsteps.data import read_dataframe
    from mlsteps.steps.validate import suggest_expectations as suggest

    try:
        frame = read_dataframe(data)
    except MlstepsError as exc:
        _fail(exc)
    suggestions = suggest(frame, max_set_size=max_set_size)
    click.echo(
        f"# {len(suggestions)} expectations suggested from {data} ({len(frame)} rows); review before use"
    )
    click.echo(yaml.safe_dump({"expectations": suggestions}, sort_keys=False, allow_unicode=True), nl=False)


def _resolve_alias(name: str, alias: str, settings: Any, root: str) -> str:
    from mlsteps.backends.mlflow import RegisteredModelUri, configure, get_model_version
    from mlsteps.context import RunContext, RunKey

    ctx = RunContext(
        run_key=RunKey(run_id="reproduce", step="reproduce"), artifact_root=root, mlflow=settings
    )
    return str(get_model_version(configure(ctx), RegisteredModelUri(name, alias=alias)).version)


def _record_label(rec: LineageRecord) -> str:
    style = STATUS_STYLE.get(rec.status, rec.status)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(rec.metrics.items())[:6])
    return (
        f"[bold]{rec.run_key.step}[/] ({rec.step_type} v{rec.step_version}) {style} "
        f"run={rec.run_key.run_id} config={rec.config_hash[7:19]}"
        + (f" [dim]{metrics}[/]" if metrics else "")
    )


def _tree(node: LineageNode, tree: Any = None) -> Any:
    from rich.tree import Tree

    from mlsteps.lineage import ref_summary

    rec = node.record
    branch = Tree(_record_label(rec)) if tree is None else tree.add(_record_label(rec))
    for name, link in rec.outputs.items():
        branch.add(f"[green]out[/] {name}: {ref_summary(link.ref)}")
    for name, link in rec.inputs.items():
        sub = branch.add(f"[blue]in[/] {name}: {ref_summary(link.ref)}")
        if name in node.parents:
            _tree(node.parents[name], sub)
    if rec.code_revision:
        branch.add(f"[dim]code {rec.code_revision}[/]")
    return branch


def _run_tree(run_id: str, records: list[LineageRecord]) -> Any:
    from rich.tree import Tree

    from mlsteps.lineage import ref_summary

    tree = Tree(f"run [bold]{run_id}[/] ({records[0].run_key.pipeline})")
    for rec in records:
        branch = tree.add(_record_label(rec))
        for name, link in rec.inputs.items():
            branch.add(f"[blue]in[/] {name}: {ref_summary(link.ref)}")
        for name, link in rec.outputs.items():
            branch.add(f"[green]out[/] {name}: {ref_summary(link.ref)}")
        if rec.error:
            branch.add(f"[red]{rec.error}[/]")
    return tree


from mlsteps.cli_monitor import monitor as _monitor_command  # noqa: E402 - attached after `main` exists

main.add_command(_monitor_command)

from mlsteps.cli_deploy import deploy_group as _deploy_group  # noqa: E402 - attached after `main` exists

main.add_command(_deploy_group)

from mlsteps.cli_init import init as _init_command  # noqa: E402 - attached after `main` exists

main.add_command(_init_command)


if __name__ == "__main__":  # pragma: no cover
    main()
