"""The mlsteps error hierarchy.

Every error a user can act on derives from :class:`MlstepsError`. Adapters map
:class:`GateFailure` onto their orchestrator's native failure so downstream work
does not run, and the CLI maps the classes onto exit codes (1 for step and gate
failures, 2 for usage and configuration errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


class MlstepsError(Exception):
    """Base class of every error raised on purpose by mlsteps."""

    exit_code: int = 1


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and what was expected."""

    file: str | None
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        loc = self.path or "(top level)"
        return f"{where}: {loc}: {self.message}"


class ConfigError(MlstepsError):
    """Invalid configuration: a spec, a step config or a CLI argument.

    Carries every problem found, not just the first, so a user fixes a file in one
    pass. Each problem names the file, the YAML/JSON path and what was expected.
    """

    exit_code = 2

    def __init__(self, problems: Sequence[Problem] | str, *, file: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(file=file, path="", message=problems)]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = f"{count} configuration problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class StepNotFoundError(ConfigError):
    """A spec or CLI call named a step type that no package provides."""


class GateFailure(MlstepsError):
    """A quality gate (validation, evaluation, drift) did not pass.

    Raised by a step after it has written its report, so the report ref is kept on
    the error for adapters to publish. Nothing downstream of the gate may run.
    """

    def __init__(
        self,
        step: str,
        reasons: Iterable[str],
        *,
        report: Any | None = None,
    ) -> None:
        self.step = step
        self.reasons = list(reasons)
        self.report = report
        detail = "; ".join(self.reasons) if self.reasons else "no reason given"
        super().__init__(f"gate '{step}' failed: {detail}")


class BackendError(MlstepsError):
    """A backend library (MLflow, Feast, GX, Kubernetes) failed.

    The backend's own message is kept verbatim so nothing is lost in translation.
    """

    def __init__(self, backend: str, message: str, *, hint: str | None = None) -> None:
        self.backend = backend
        self.backend_message = message
        self.hint = hint
        text = f"{backend} error: {message}"
        if hint:
            text = f"{text}\nhint: {hint}"
        super().__init__(text)


class DataError(MlstepsError):
    """Input data is unreadable or not of the expected shape (empty, wrong dtypes...)."""


class MissingDependencyError(MlstepsError, ImportError):
    """An optional dependency needed by a step is not installed."""

    exit_code = 2

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"the '{module}' package is needed for this step; install it with "
            f'`pip install "mlsteps[{extra}]"`'
        )
