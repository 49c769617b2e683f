"""The pipeline spec (``pipeline.yaml``): loading and validating it up front.

One spec drives the local runner and every adapter. Loading validates the whole
file before anything runs: structure, step types, each step's config, the wiring
between steps and cycles. Every problem is reported at once, each with the file,
its line, the YAML path and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlsteps.context import (
    DEFAULT_ARTIFACT_ROOT,
    MlflowSettings,
    Resources,
    RunContext,
    RunKey,
    build_context,
)
from mlsteps.errors import ConfigError, Problem
from mlsteps.step import validation_problems
from mlsteps.storage import resolve_root

if TYPE_CHECKING:
    from mlsteps.step import Step, StepConfig

#: Step ids become Airflow task ids, Dagster asset names and Prefect task names:
#: this is the subset all three accept.
ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ID_RULE = "letters, digits and underscores, starting with a letter or underscore, at most 63 characters"


class Defaults(BaseModel):
    """Settings shared by every step of a pipeline."""

    model_config = ConfigDict(extra="forbid")

    artifact_root: str = Field(
        DEFAULT_ARTIFACT_ROOT, description="Local path (relative to the spec) or fsspec URL for outputs."
    )
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)

    @field_validator("artifact_root")
    @classmethod
    def _root_scheme(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a local path or an fsspec URL, got an empty string")
        scheme = urlparse(value).scheme
        if scheme and len(scheme) > 1 and scheme != "file":
            from fsspec.registry import known_implementations, registry

            if scheme not in known_implementations and scheme not in registry:
                raise ValueError(
                    f"unknown URL scheme {scheme!r}: expected a local path or an fsspec URL "
                    "(s3://, gs://, abfs://, file://...)"
                )
        return value

    @field_validator("mlflow")
    @classmethod
    def _mlflow_schemes(cls, value: MlflowSettings) -> MlflowSettings:
        for name in ("tracking_uri", "registry_uri"):
            uri = getattr(value, name)
            if uri is not None and not mlflow_scheme_known(uri):
                raise ValueError(
                    f"{name}: unknown URI scheme in {uri!r}; expected http(s)://, sqlite:///, "
                    "postgresql://, mysql://, file:// or databricks"
                )
        return value


#: URI schemes MLflow's tracking and registry stores accept out of the box (SQLAlchemy
#: dialects may add ``+driver``); plugins add theirs through entry points.
MLFLOW_SCHEMES = frozenset(
    {
        "",
        "file",
        "http",
        "https",
        "sqlite",
        "postgresql",
        "mysql",
        "mssql",
        "databricks",
        "databricks-uc",
        "uc",
    }
)


def mlflow_scheme_known(uri: str) -> bool:
    """Whether MLflow has a store for ``uri``'s scheme (built in, or from an installed plugin)."""
    from importlib import metadata

    scheme = uri.split(":", 1)[0] if uri.startswith("databricks") else urlparse(uri).scheme.split("+", 1)[0]
    if scheme in MLFLOW_SCHEMES:
        return True
    groups = ("mlflow.tracking_store", "mlflow.model_registry_store")
    return any(ep.name == scheme for group in groups for ep in metadata.entry_points(group=group))


class StepSpec(BaseModel):
    """One step of a pipeline as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    uses: str | None = Field(None, description="Step type; defaults to the step's id.")
    config: dict[str, Any] = Field(default_factory=dict, description="The step type's config.")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Input name -> '<upstream step id>.<output name>'."
    )
    resources: Resources = Field(default_factory=Resources)
    cache: bool = Field(True, description="Allow reusing outputs of an identical earlier run.")
    retries: int = Field(0, ge=0, le=20, description="Retries adapters configure for this step.")


class PipelineModel(BaseModel):
    """The top level of ``pipeline.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Pipeline name (becomes the DAG id, job name, flow name).")
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    steps: dict[str, StepSpec] = Field(description="Step id -> step.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError(f"expected {ID_RULE}")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: dict[str, StepSpec]) -> dict[str, StepSpec]:
        if not value:
            raise ValueError("a pipeline needs at least one step")
        return value


@dataclass
class ResolvedStep:
    """A validated step: its class, parsed config and upstream wiring."""

    id: str
    step_cls: type[Step[Any]]
    config: StepConfig
    inputs: dict[str, tuple[str, str]]
    spec: StepSpec

    @property
    def upstream(self) -> list[str]:
        return sorted({src for src, _ in self.inputs.values()})


@dataclass
class PipelineSpec:
    """A loaded, fully validated pipeline."""

    path: Path | None
    model: PipelineModel
    steps: dict[str, ResolvedStep]
    order: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def artifact_root(self, override: str | None = None) -> str:
        """The artifact root: a local path resolved against the spec's directory, or a URL."""
        return resolve_root(override or self.model.defaults.artifact_root, self.base_dir)

    def context(
        self,
        step_id: str,
        run_key: RunKey,
        *,
        artifact_root: str | None = None,
        mlflow: MlflowSettings | None = None,
    ) -> RunContext:
        """The run context for ``step_id``: what the local runner and every adapter hand a step.

        Adapters pass a ``run_key`` built from their orchestrator's run id and retry
        number; everything else comes from the spec so all runners behave alike.
        """
        if step_id not in self.steps:
            raise KeyError(f"unknown step {step_id!r}; expected one of {sorted(self.steps)}")
        return build_context(
            run_key,
            artifact_root=self.artifact_root(artifact_root),
            base_dir=self.base_dir,
            mlflow=mlflow or self.model.defaults.mlflow,
            resources=self.steps[step_id].spec.resources,
        )

    def downstream(self, step_id: str) -> set[str]:
        """Every step that depends on ``step_id``, directly or not."""
        out: set[str] = set()
        frontier = [step_id]
        while frontier:
            current = frontier.pop()
            for sid, step in self.steps.items():
                if current in step.upstream and sid not in out:
                    out.add(sid)
                    frontier.append(sid)
        return out


def _line_map(
    node: yaml.Node, path: tuple[str, ...] = (), out: dict[tuple[str, ...], int] | None = None
) -> dict[tuple[str, ...], int]:
    """Map each YAML path to the line (1-based) where it starts."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            out[sub] = key.start_mark.line + 1
            _line_map(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, str(i)), out)
    return out


class _Problems:
    """Collects problems and attaches the best-known line to each."""

    def __init__(self, file: str | None, node: yaml.Node | None) -> None:
        self.file = file
        self.node = node
        self._lines: dict[tuple[str, ...], int] | None = None
        self.items: list[Problem] = []

    @property
    def lines(self) -> dict[tuple[str, ...], int]:
        # Built on the first problem only: a valid spec never needs it.
        if self._lines is None:
            self._lines = _line_map(self.node) if self.node is not None else {}
        return self._lines

    def add(self, path: str, message: str) -> None:
        parts = tuple(path.split(".")) if path else ()
        line = None
        while parts:
            if parts in self.lines:
                line = self.lines[parts]
                break
            parts = parts[:-1]
        self.items.append(Problem(file=self.file, path=path, message=message, line=line))

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p.path, p.message)


#: libyaml's loader when PyYAML was built with it (several times faster), else the pure-Python one.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SPEC_CACHE: dict[tuple[Path, str], PipelineSpec] = {}
_SPEC_CACHE_SIZE = 64


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate ``pipeline.yaml``; raise :class:`ConfigError` listing every problem.

    Results are memoised by resolved path and file content: a DAG file building
    many pipelines from one spec, or a scheduler re-parsing it, validates it once
    per process. Treat the returned spec as read-only (it may be shared).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"spec file not found: {p}", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read spec file: {exc}", file=str(p)) from None
    key = (p.resolve(), text)
    spec = _SPEC_CACHE.get(key)
    if spec is None:
        spec = parse_spec(text, path=key[0])
        if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
            _SPEC_CACHE.pop(next(iter(_SPEC_CACHE)))
        _SPEC_CACHE[key] = spec
    return spec


def parse_spec(text: str, *, path: Path | None = None) -> PipelineSpec:
    """Validate a spec given as YAML text (``path`` locates relative paths and errors)."""
    file = str(path) if path else None
    loader = _YamlLoader(text)
    try:
        # One parse: the node tree gives line numbers (only if there are problems), the data comes from it.
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, "", f"invalid YAML: {reason}", line=line)]) from None
    finally:
        loader.dispose()
    problems = _Problems(file, node)
    if not isinstance(raw, dict):
        problems.add("", f"expected a mapping with 'name' and 'steps', got {type(raw).__name__}")
        raise ConfigError(problems.items)
    try:
        model = PipelineModel.model_validate(raw)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, file=file))
        raise ConfigError(problems.items) from None
    steps = _resolve_steps(model, problems)
    order = _topological_order(model, problems)
    if problems.items:
        raise ConfigError(problems.items)
    return PipelineSpec(path=path, model=model, steps=steps, order=order)


def _resolve_steps(model: PipelineModel, problems: _Problems) -> dict[str, ResolvedStep]:
    from mlsteps.registry import get_step

    resolved: dict[str, ResolvedStep] = {}
    classes: dict[str, type[Step[Any]]] = {}
    for sid, spec in model.steps.items():
        if not ID_PATTERN.match(sid):
            problems.add(f"steps.{sid}", f"invalid step id {sid!r}: expected {ID_RULE}")
        try:
            classes[sid] = get_step(spec.uses or sid)
        except ConfigError as exc:
            where = f"steps.{sid}.uses" if spec.uses else f"steps.{sid}"
            for p in exc.problems:
                problems.add(where, p.message + ("" if spec.uses else " (set 'uses' to pick a step type)"))
    for sid, spec in model.steps.items():
        cls = classes.get(sid)
        if cls is None:
            continue
        try:
            config = cls.parse_config(spec.config)
        except ConfigError as exc:
            for p in exc.problems:
                rest = p.path.split(".config", 1)[1] if ".config" in p.path else ""
                problems.add(f"steps.{sid}.config{rest}", p.message)
            continue
        wiring: dict[str, tuple[str, str]] = {}
        for name, source in spec.inputs.items():
            where = f"steps.{sid}.inputs.{name}"
            declared = cls.inputs.get(name)
            if declared is None:
                problems.add(
                    where,
                    f"step type '{cls.name}' has no input {name!r}; expected one of "
                    f"{sorted(cls.inputs) or 'none'}",
                )
                continue
            up, dot, output = source.partition(".")
            if not dot or not up or not output:
                problems.add(where, f"expected '<step id>.<output>', got {source!r}")
                continue
            if up == sid:
                problems.add(where, f"step {sid!r} cannot take its own output as input")
                continue
            if up not in model.steps:
                problems.add(where, f"unknown step {up!r}; expected one of {sorted(model.steps)}")
                continue
            up_cls = classes.get(up)
            if up_cls is None:
                continue
            kind = up_cls.outputs.get(output)
            if kind is None:
                problems.add(
                    where,
                    f"step {up!r} ({up_cls.name}) has no output {output!r}; expected one of "
                    f"{sorted(up_cls.outputs)}",
                )
                continue
            if kind != declared.kind:
                problems.add(
                    where, f"input {name!r} takes a {declared.kind} ref but {source} is a {kind} ref"
                )
                continue
            wiring[name] = (up, output)
        for name, declared in cls.inputs.items():
            if declared.required and name not in spec.inputs:
                problems.add(f"steps.{sid}.inputs", f"required input {name!r} ({declared.kind}) is not wired")
        resolved[sid] = ResolvedStep(id=sid, step_cls=cls, config=config, inputs=wiring, spec=spec)
    return resolved


def _topological_order(model: PipelineModel, problems: _Problems) -> list[str]:
    """Steps in dependency order, ties broken by their order in the file; reports cycles."""
    # Use the raw wiring, so a cycle is reported even if an edge has other problems.
    deps = {
        sid: {src.partition(".")[0] for src in spec.inputs.values()} & (set(model.steps) - {sid})
        for sid, spec in model.steps.items()
    }
    order: list[str] = []
    remaining = dict(deps)
    while remaining:
        ready = [sid for sid, d in remaining.items() if not d - set(order)]
        if not ready:
            cycle = _find_cycle(remaining)
            problems.add(f"steps.{cycle[0]}.inputs", "dependency cycle: " + " -> ".join(cycle))
            return order
        for sid in ready:
            order.append(sid)
            del remaining[sid]
    return order


def _find_cycle(deps: dict[str, set[str]]) -> list[str]:
    """One cycle among ``deps`` as a closed path, e.g. ``[a, b, a]``."""
    start = sorted(deps)[0]
    seen: list[str] = []
    current = start
    while current not in seen:
        seen.append(current)
        current = sorted(d for d in deps[current] if d in deps)[0]
    return [*seen[seen.index(current) :], current]
