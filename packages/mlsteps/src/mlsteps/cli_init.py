"""``mlsteps init``: start a project from one of the cookiecutter templates (Airflow, Dagster, Prefect).

The templates live in the repository's ``templates/`` directory, and wheels
carry a copy (``mlsteps/templates``). They are found, in order, through
``--template``, the ``MLSTEPS_TEMPLATES`` environment variable, the source
checkout this module was imported from, or the wheel's copy.
Either may be a local directory holding ``airflow/``, ``dagster/`` and
``prefect/``, or a repository cookiecutter can clone (``gh:owner/repo``, a git URL)
holding them under ``templates/``. Cookiecutter is imported only when the
command runs.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import click

from mlsteps.errors import ConfigError, MissingDependencyError, MlstepsError

ORCHESTRATORS = ("airflow", "dagster", "prefect")
#: Environment variable naming the templates directory (or repository).
TEMPLATES_ENV = "MLSTEPS_TEMPLATES"
#: ``templates/`` of the source checkout: this file is packages/mlsteps/src/mlsteps/cli_init.py.
CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[4] / "templates"
#: The copy a wheel installs (``force-include`` in the package's pyproject.toml).
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"
#: The cookiecutter requirement the command needs (the templates use 2.x features).
COOKIECUTTER_REQUIREMENT = "cookiecutter>=2.6"


class CookiecutterMissingError(MissingDependencyError):
    """``mlsteps init`` runs cookiecutter, which is not installed."""

    def __init__(self) -> None:
        self.module = "cookiecutter"
        self.extra = ""
        MlstepsError.__init__(
            self,
            f'`mlsteps init` needs cookiecutter; install it with `pip install "{COOKIECUTTER_REQUIREMENT}"`',
        )


def _is_repository(source: str) -> bool:
    """Whether ``source`` is something cookiecutter clones or downloads rather than a local directory."""
    prefixes = ("gh:", "gl:", "bb:", "git+", "hg+", "https://", "http://", "git@", "file://")
    return source.startswith(prefixes) or source.endswith((".git", ".zip"))


def locate_template(orchestrator: str, template: str | None = None) -> tuple[str, str | None]:
    """Where the ``orchestrator`` template is: ``(template, directory)`` as cookiecutter takes them.

    ``template`` (the ``--template`` option), else ``$MLSTEPS_TEMPLATES``, else the
    source checkout's ``templates/``. A local directory may hold the orchestrators'
    templates or be that template itself; a repository holds them under
    ``templates/<orchestrator>`` (cookiecutter's ``directory``).

    Raises:
        ConfigError: No template was found; the message says where it looked.
    """
    if orchestrator not in ORCHESTRATORS:
        raise ConfigError(f"--orchestrator: expected one of {', '.join(ORCHESTRATORS)}, got {orchestrator!r}")
    source, origin = template, "--template"
    if source is None and os.environ.get(TEMPLATES_ENV):
        source, origin = os.environ[TEMPLATES_ENV], TEMPLATES_ENV
    if source is None:
        for base in (CHECKOUT_TEMPLATES, PACKAGED_TEMPLATES):
            candidate = base / orchestrator
            if (candidate / "cookiecutter.json").is_file():
                return str(candidate), None
        raise ConfigError(
            f"no mlsteps templates found in {CHECKOUT_TEMPLATES} (a source checkout) or {PACKAGED_TEMPLATES} "
            "(an installed wheel). Pass --template with a checkout's templates/ directory or "
            f"a repository (e.g. gh:mlsteps/mlsteps), or set {TEMPLATES_ENV}"
        )
    if _is_repository(source):
        return source, f"templates/{orchestrator}"
    root = Path(source).expanduser().resolve()
    for candidate in (root / orchestrator, root / "templates" / orchestrator, root):
        if (candidate / "cookiecutter.json").is_file():
            return str(candidate), None
    raise ConfigError(
        f"{origin}: {root} holds no '{orchestrator}' template (looked for cookiecutter.json in "
        f"{root / orchestrator}, {root / 'templates' / orchestrator} and {root})"
    )


def parse_settings(values: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` strings -> a dict, or ConfigError naming the bad one."""
    settings: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected KEY=VALUE, got {value!r}")
        settings[key.strip()] = val
    return settings


def render(
    orchestrator: str,
    name: str,
    *,
    output_dir: str | os.PathLike[str] = ".",
    no_input: bool = False,
    settings: dict[str, str] | None = None,
    template: str | None = None,
) -> Path:
    """Render the ``orchestrator`` template for project ``name`` into ``output_dir``; return the project dir.

    ``name`` is the template's ``project_name`` (the slug is derived from it unless
    ``settings`` sets ``project_slug``). The template's pre-generation hook checks
    the values; a bad value stops generation before anything is written.

    Raises:
        CookiecutterMissingError: cookiecutter is not installed.
        ConfigError: No template found, or the hook rejected a value (its message is on stderr),
            or the project directory already exists.
    """
    try:
        main_module: Any = importlib.import_module("cookiecutter.main")
        exceptions: Any = importlib.import_module("cookiecutter.exceptions")
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] != "cookiecutter":
            raise
        raise CookiecutterMissingError() from exc
    source, directory = locate_template(orchestrator, template)
    context = {"project_name": name, **(settings or {})}
    # Cookiecutter logs a traceback for a failed hook; the hook's own ERROR lines (stderr) and
    # the ConfigError below say everything, so its logger is quietened for the call.
    log = logging.getLogger("cookiecutter")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        project = main_module.cookiecutter(
            source,
            directory=directory,
            no_input=no_input,
            extra_context=context,
            output_dir=os.fspath(output_dir),
        )
    except exceptions.FailedHookException:
        raise ConfigError(
            "the template's pre-generation check rejected the variables (the ERROR lines above name "
            "each one and say why); nothing was written",
            file=source if directory is None else f"{source}/{directory}",
        ) from None
    except exceptions.OutputDirExistsException as exc:
        raise ConfigError(f"{exc}; choose another name or --output-dir") from None
    except exceptions.CookiecutterException as exc:
        raise ConfigError(f"cookiecutter: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # e.g. a value outside a choice variable's list, with --no-input
        raise ConfigError(f"cookiecutter: {exc}") from None
    finally:
        log.setLevel(level)
    return Path(project)


@click.command("init")
@click.argument("name")
@click.option(
    "--orchestrator",
    "-o",
    type=click.Choice(ORCHESTRATORS),
    required=True,
    help="The orchestrator the project runs on.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the project directory.",
)
@click.option("--no-input", is_flag=True, help="Do not prompt; use the defaults for everything not set.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A template variable, e.g. model_name=churn or mlsteps_source=/path/to/mlsteps; repeatable.",
)
@click.option(
    "--template",
    default=None,
    help=f"Templates directory or repository (default: ${TEMPLATES_ENV}, else the source checkout's).",
)
def init(
    name: str,
    orchestrator: str,
    output_dir: Path,
    no_input: bool,
    settings: tuple[str, ...],
    template: str | None,
) -> None:
    """Create a project NAME from the ORCHESTRATOR template (a cookiecutter template).

    The project holds a pipeline.yaml, the orchestrator's entry file, sample data,
    a Feast repo, an expectation suite, tests, a Makefile (make demo, make test) and CI.
    """
    from mlsteps.cli import _console, _fail

    try:
        project = render(
            orchestrator,
            name,
            output_dir=output_dir,
            no_input=no_input,
            settings=parse_settings(settings),
            template=template,
        )
    except MlstepsError as exc:
        _fail(exc)
    console = _console()
    console.print(f"created [bold]{project}[/] ({orchestrator})", soft_wrap=True)
    console.print(f"next: cd {project} && make demo", markup=False, soft_wrap=True)
