"""The ``local`` target: MLflow's pyfunc scoring server as a process on this machine.

Each deployed version runs as its own server process on a free port of
127.0.0.1, detached in its own session so it outlives the step that started it
and can be stopped as a group. Deploys are blue/green: the new version starts
beside the live one, must answer ``/ping`` and one real ``/invocations``
prediction on the model's input example, and only then becomes the recorded
endpoint; the old server is stopped after the switch. An unhealthy candidate
is stopped and the live version keeps serving. Only the ``replace`` strategy is
implemented here (canary, shadow and A/B need a traffic-splitting proxy).

The server is started the way ``mlflow models serve --env-manager local`` does
(``mlflow.pyfunc.scoring_server.get_cmd``: uvicorn on the scoring app), minus the
supervising ``mlflow`` CLI process, which would double the start-up time.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlsteps._imports import require
from mlsteps.deploy.base import (
    DeploymentState,
    ModelSpec,
    StateFile,
    StrategyKind,
    Target,
    check_artifacts,
)
from mlsteps.errors import BackendError, ConfigError, GateFailure, Problem
from mlsteps.hashing import hash_value

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlsteps.context import RunContext
    from mlsteps.deploy.base import DeployRequest
    from mlsteps.refs import DeploymentRef

#: Seconds a server gets to exit on SIGTERM before its process group is killed.
STOP_GRACE_S = 10.0
_POLL_S = 0.25
#: Server starts per deploy when the chosen port is taken before the server binds it.
PORT_ATTEMPTS = 3
#: Handles of servers this process started, so they can be reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
#: Environment variable naming the deployment directory a server was started for; it lets a later
#: deploy find a server whose starter was killed before recording it in the state file.
SERVER_MARKER = "MLSTEPS_LOCAL_DEPLOYMENT"


class LocalTargetConfig(BaseModel):
    """Where and how the local model server runs."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local"] = "local"
    host: str = Field(
        "127.0.0.1", description="Interface the server binds; keep the loopback unless you mean to expose it."
    )
    workers: int = Field(1, ge=1, le=32, description="uvicorn worker processes per server.")
    startup_timeout_s: float = Field(
        180.0, gt=0, le=3600, description="Seconds a new server has to become healthy before it is stopped."
    )
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of each health-check request.")
    check_prediction: bool = Field(
        True,
        description="Health also needs one real prediction on the model's input example "
        "(skipped, with a warning, for a model logged without one).",
    )
    lock_timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="Seconds to wait for another deploy of the same deployment."
    )


class LocalServer(BaseModel):
    """One server process as recorded in the state file's ``runtime``."""

    model_config = ConfigDict(extra="forbid")

    version: str
    model_uri: str
    pid: int
    #: The process's start time (clock ticks since boot on Linux): guards against pid reuse.
    start_id: str | None
    host: str
    port: int
    model_path: str
    log: str
    config_hash: str
    run_key: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/invocations"


class HealthError(Exception):
    """A candidate server did not become healthy; the message says why."""


# --------------------------------------------------------------------------- processes


def process_start_id(pid: int) -> str | None:
    """An identifier of the process ``pid``'s start, or ``None`` if it is not running (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    if stat:
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3 of proc(5)), fields[19] the start time (field 22).
        return None if fields[0] in ("Z", "X") else fields[19]
    try:  # no /proc (not Linux): only the pid's existence can be checked
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "unknown"


def is_running(server: LocalServer) -> bool:
    """Whether the recorded server process still runs (and is the same process, not a reused pid)."""
    _reap(server.pid)
    current = process_start_id(server.pid)
    if current is None:
        return False
    return server.start_id in (None, "unknown") or current == server.start_id


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def stop_server(server: LocalServer, *, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop a server and its workers (its whole process group); True if it was running."""
    if not is_running(server):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_running(server):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pid, signal.SIGKILL)
    for _ in range(50):
        if not is_running(server):
            break
        time.sleep(0.1)
    return True


def stray_servers(directory: Path, *, keep: set[int]) -> list[int]:
    """Server processes started for ``directory`` whose pids are not in ``keep`` (Linux ``/proc``).

    A server is recognised by :data:`SERVER_MARKER` in its environment naming
    ``directory``, and must lead its own session as every server started here does.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    marker = f"{SERVER_MARKER}={directory}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        pid = int(entry.name)
        try:
            environ = (entry / "environ").read_bytes()
            leader = os.getsid(pid) == pid
        except OSError:
            continue  # gone, or not ours
        if leader and marker in environ.split(b"\0") and process_start_id(pid) is not None:
            found.append(pid)
    return found


def free_port(host: str) -> int:
    """A port the OS reports free on ``host`` (another process could still take it first)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def lost_its_port(server: LocalServer) -> bool:
    """Whether ``server`` exited because its port was taken between choosing and binding it."""
    if is_running(server):
        return False
    text = log_tail(server.log, lines=40).lower()
    return "address already in use" in text or "errno 98" in text


def log_tail(path: str, lines: int = 15) -> str:
    """The last lines of a server log, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- HTTP


def _http(url: str, *, data: bytes | None = None, timeout_s: float) -> tuple[int, bytes]:
    """GET (or POST JSON ``data``) ``url``; the status and body, HTTP errors included."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def predict(endpoint: str, payload: bytes, *, timeout_s: float = 30.0) -> Any:
    """POST ``payload`` (MLflow's JSON scoring format) to ``endpoint``; the predictions, or BackendError."""
    import json

    try:
        status, body = _http(endpoint, data=payload, timeout_s=timeout_s)
    except OSError as exc:
        raise BackendError("local", f"could not reach {endpoint}: {exc}") from exc
    if status != 200:
        raise BackendError("local", f"{endpoint} answered HTTP {status}: {_error_text(body)}")
    try:
        return json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError("local", f"{endpoint} answered an unexpected body: {body[:200]!r}") from exc


def _error_text(body: bytes) -> str:
    """The scoring server's error: its message and the exception it caught (the stack's last line)."""
    import json

    try:
        error = json.loads(body)
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:500]
    lines = [line for line in str(error.get("stack_trace") or "").splitlines() if line.strip()]
    return f"{message} ({lines[-1].strip()})" if lines else message


def serving_example(model_path: str | Path) -> bytes | None:
    """The model's input example as an ``/invocations`` payload, or ``None`` if it was logged without one.

    Read from the ``serving_input_example.json`` MLflow writes next to ``MLmodel``
    (no MLflow import needed); older models without it fall back to MLflow's
    own conversion of the raw input example.
    """
    import yaml

    root = Path(model_path)
    try:
        meta = yaml.safe_load((root / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    info: dict[str, Any] = meta.get("saved_input_example_info") or {}
    serving = info.get("serving_input_path")
    if isinstance(serving, str) and (root / serving).is_file():
        return (root / serving).read_bytes()
    if not info:
        return None
    try:
        from mlflow.models import Model

        text = Model.load(str(root)).get_serving_input(str(root))
    except Exception:  # noqa: BLE001 - the example is optional: failing to read it skips the prediction check
        return None
    return text.encode() if isinstance(text, str) and text else None


# --------------------------------------------------------------------------- the target


class LocalTarget(Target):
    """Serve registered MLflow models from processes on this machine, blue/green."""

    name: ClassVar[str] = "local"
    strategies: ClassVar[frozenset[StrategyKind]] = frozenset({"replace"})
    checks_artifacts: ClassVar[bool] = True

    def __init__(self, config: LocalTargetConfig | None = None) -> None:
        super().__init__(config or LocalTargetConfig())
        self.config: LocalTargetConfig

    # ----------------------------------------------------------------- Target API

    def deploy(self, ctx: RunContext, request: DeployRequest) -> DeploymentRef:
        state_file = self._state_file(ctx, request.deployment)
        key = ctx.run_key.idempotency_key
        with state_file.locked(self.config.lock_timeout_s):
            state = self._load(state_file, request.deployment, model_name=request.model.name)
            self._cleanup(state_file, state)
            live = self._server(state, "live")
            version = request.model.version
            if request.dry_run:
                return self._ref(
                    state_file,
                    state,
                    model_uri=request.model.model_uri,
                    status="pending",
                    extra={
                        "dry_run": True,
                        "plan": f"start {request.model.name} v{version} beside "
                        + (f"v{live.version} ({live.endpoint})" if live else "nothing")
                        + ", health-check it, switch the endpoint, stop the old server",
                    },
                )
            if (
                live is not None
                and live.version == version
                and live.config_hash == self._config_hash()
                and self._check(live, timeout_s=self.config.request_timeout_s) is None
            ):
                ctx.logger.info("deploy: v%s already serves at %s; reusing it", version, live.endpoint)
                last = state.history[-1] if state.history else None
                retry = (
                    last is not None
                    and last.version == version
                    and last.status == "healthy"
                    and last.details.get("run_key") == key
                )
                if not retry:
                    state.history.append(
                        self._entry(
                            ctx,
                            "deploy",
                            version,
                            live.version,
                            "healthy",
                            request.actor,
                            request.reason,
                            reused=True,
                        )
                    )
                    state_file.save(state)
                return self._ref(
                    state_file,
                    state,
                    model_uri=request.model.model_uri,
                    status="healthy",
                    extra={"reused": True},
                )
            return self._switch(
                ctx,
                state_file,
                state,
                request.model,
                action="deploy",
                actor=request.actor,
                reason=request.reason,
            )

    def rollback(
        self, ctx: RunContext, deployment: str, *, to_version: str | None, actor: str, reason: str
    ) -> DeploymentRef:
        state_file = self._state_file(ctx, deployment)
        key = ctx.run_key.idempotency_key
        with state_file.locked(self.config.lock_timeout_s):
            state = state_file.load()
            if state is None:
                raise ConfigError(
                    [
                        Problem(
                            None, "deploy.config.name", f"no deployment {deployment!r} under {ctx.store.root}"
                        )
                    ]
                )
            self._check_target(state)
            self._cleanup(state_file, state)
            last = state.history[-1] if state.history else None
            if (
                last is not None
                and last.action == "rollback"
                and last.status == "healthy"
                and last.details.get("run_key") == key
                and last.version == state.live_version
            ):
                # A retry of a rollback that already happened must not roll back again.
                return self._ref(
                    state_file,
                    state,
                    model_uri=_model_uri(state.model_name, last.version),
                    status="healthy",
                    extra={"reused": True},
                )
            healthy = {e.version for e in state.history if e.status == "healthy" and e.version}
            target = to_version or state.previous_version()
            if target is None:
                raise ConfigError(
                    [
                        Problem(
                            None,
                            "deploy.config.to_version",
                            f"deployment {deployment!r} has no earlier healthy version to roll back to "
                            + (
                                f"(live: v{state.live_version})"
                                if state.live_version
                                else "(nothing is live: pass to_version / --to-version to serve one again)"
                            ),
                        )
                    ]
                )
            if target not in healthy:
                raise ConfigError(
                    [
                        Problem(
                            None,
                            "deploy.config.to_version",
                            f"v{target} never served deployment {deployment!r} healthily; "
                            f"roll back to one of {sorted(healthy, key=_version_key)} or deploy it",
                        )
                    ]
                )
            if state.model_name is None:
                raise BackendError("local", f"deployment state {state_file.uri} records no model name")
            model = ModelSpec(
                name=state.model_name, version=target, model_uri=_model_uri(state.model_name, target)
            )
            return self._switch(ctx, state_file, state, model, action="rollback", actor=actor, reason=reason)

    def status(self, ctx: RunContext, deployment: str) -> DeploymentState | None:
        state_file = self._state_file(ctx, deployment)
        state = state_file.load()
        if state is None:
            return None
        live = self._server(state, "live")
        if live is not None:
            # Not persisted: whether the recorded process runs right now.
            state.runtime["live"] = {**state.runtime["live"], "running": is_running(live)}
        return state

    def stop(self, ctx: RunContext, deployment: str, *, actor: str, reason: str) -> DeploymentRef | None:
        state_file = self._state_file(ctx, deployment)
        with state_file.locked(self.config.lock_timeout_s):
            state = state_file.load()
            if state is None:
                return None
            self._check_target(state)
            self._cleanup(state_file, state)
            live = self._server(state, "live")
            stopped = live is not None and stop_server(live)
            previous = state.live_version
            if live is not None or previous is not None:
                state.history.append(
                    self._entry(
                        ctx, "stop", previous, previous, "stopped", actor, reason, was_running=stopped
                    )
                )
            state.runtime["live"] = None
            state.live_version = None
            state.endpoint = None
            state.traffic = {}
            state_file.save(state)
            return self._ref(
                state_file, state, model_uri=_model_uri(state.model_name, previous), status="stopped"
            )

    # ----------------------------------------------------------------- blue/green

    def _switch(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        model: ModelSpec,
        *,
        action: Literal["deploy", "rollback"],
        actor: str,
        reason: str,
    ) -> DeploymentRef:
        """Start ``model`` beside the live server, switch to it once healthy, then stop the old one."""
        live = self._server(state, "live")
        model_path = self._fetch(ctx, state_file, model)
        started = time.monotonic()
        for start in range(1, PORT_ATTEMPTS + 1):
            candidate = self._start(ctx, state_file, model, model_path)
            # Recorded before the health check: a crash from here on leaves a trace the next deploy cleans up.
            state.runtime["candidate"] = candidate.model_dump(mode="json")
            state_file.save(state)
            try:
                problem = self._await_healthy(candidate)
            except BaseException:
                stop_server(candidate)
                state.runtime["candidate"] = None
                state_file.save(state)
                raise
            if problem is None or start == PORT_ATTEMPTS or not lost_its_port(candidate):
                break
            # The port was free when chosen, but another process bound it while the server was
            # still importing: a race with the machine, not a fault of the model. Try another port.
            ctx.logger.warning(
                "deploy: port %s was taken before v%s's server could bind it; starting it on another port",
                candidate.port,
                model.version,
            )
            stop_server(candidate)
        startup_s = round(time.monotonic() - started, 3)
        if problem is not None:
            stop_server(candidate)
            state.runtime["candidate"] = None
            rolled_back = live is not None
            error = f"{model.name} v{model.version} did not become healthy: {problem}; " + (
                f"v{live.version} keeps serving at {live.endpoint}"
                if live is not None
                else "nothing serves this deployment"
            )
            state.history.append(
                self._entry(
                    ctx,
                    "auto_rollback" if rolled_back else action,
                    model.version,
                    state.live_version,
                    "rolled_back" if rolled_back else "failed",
                    actor,
                    reason,
                    error=problem,
                    log=candidate.log,
                    requested=action,
                )
            )
            state_file.save(state)
            ctx.logger.error("deploy: %s", error)
            return self._ref(
                state_file,
                state,
                model_uri=model.model_uri,
                status="rolled_back" if rolled_back else "failed",
                extra={"error": error, "log": candidate.log, "startup_s": startup_s},
            )
        previous = state.live_version
        state.runtime["live"] = candidate.model_dump(mode="json")
        state.runtime["candidate"] = None
        if live is not None:
            state.runtime.setdefault("retiring", []).append(live.model_dump(mode="json"))
        state.model_name = model.name
        state.live_version = model.version
        state.endpoint = candidate.endpoint
        state.traffic = {model.version: 100}
        state.history.append(
            self._entry(
                ctx,
                action,
                model.version,
                previous,
                "healthy",
                actor,
                reason,
                endpoint=candidate.endpoint,
                pid=candidate.pid,
                startup_s=startup_s,
            )
        )
        state_file.save(state)
        ctx.logger.info(
            "deploy: v%s healthy at %s after %.1f s", model.version, candidate.endpoint, startup_s
        )
        self._cleanup(state_file, state)  # stops the old server now that traffic moved
        return self._ref(
            state_file,
            state,
            model_uri=model.model_uri,
            status="healthy",
            extra={"startup_s": startup_s, "pid": candidate.pid},
        )

    def _start(
        self, ctx: RunContext, state_file: StateFile, model: ModelSpec, model_path: Path
    ) -> LocalServer:
        """Start a scoring server for ``model_path`` on a free port, detached in its own session."""
        scoring = require("mlflow.pyfunc.scoring_server")
        port = free_port(self.config.host)
        command, env = scoring.get_cmd(
            str(model_path), port, self.config.host, int(self.config.request_timeout_s), self.config.workers
        )
        args = shlex.split(command)
        if not args or args[0] != "uvicorn":
            raise BackendError("mlflow", f"unexpected scoring server command from MLflow: {command!r}")
        # `python -m uvicorn` of this interpreter; its bin/ also goes first on PATH for anything it spawns.
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        env[SERVER_MARKER] = str(state_file.directory())
        logs = state_file.directory() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"v{model.version}-{port}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(state_file.directory()),
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        ctx.logger.info(
            "deploy: started %s v%s as pid %s on port %s", model.name, model.version, proc.pid, port
        )
        return LocalServer(
            version=model.version,
            model_uri=model.model_uri,
            pid=proc.pid,
            start_id=process_start_id(proc.pid),
            host=self.config.host,
            port=port,
            model_path=str(model_path),
            log=str(log),
            config_hash=self._config_hash(),
            run_key=ctx.run_key.idempotency_key,
        )

    def _await_healthy(self, server: LocalServer) -> str | None:
        """Wait for ``server`` to pass the health check; ``None`` when healthy, else why not."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            if not is_running(server):
                tail = log_tail(server.log)
                return f"the server exited during start-up (log {server.log}):\n{tail}"
            try:
                status, _ = _http(f"{server.url}/ping", timeout_s=min(5.0, self.config.request_timeout_s))
            except OSError:
                status = 0
            if status == 200:
                return self._check(server, timeout_s=self.config.request_timeout_s)
            if time.monotonic() >= deadline:
                return (
                    f"no healthy /ping within {self.config.startup_timeout_s:.0f} s "
                    f"(last status {status or 'no answer'}; log {server.log}):\n{log_tail(server.log)}"
                )
            time.sleep(_POLL_S)

    def _check(self, server: LocalServer, *, timeout_s: float) -> str | None:
        """One health check of a started server: ``/ping`` and a real prediction; why not healthy, or None."""
        if not is_running(server):
            return "the server process is not running"
        try:
            status, body = _http(f"{server.url}/ping", timeout_s=timeout_s)
        except OSError as exc:
            return f"/ping failed: {exc}"
        if status != 200:
            return f"/ping answered HTTP {status}: {body[:200]!r}"
        if not self.config.check_prediction:
            return None
        example = serving_example(server.model_path)
        if example is None:
            return None
        try:
            predict(server.endpoint, example, timeout_s=timeout_s)
        except BackendError as exc:
            return f"the prediction on the model's input example failed: {exc.backend_message}"
        return None

    # ----------------------------------------------------------------- bookkeeping

    def _state_file(self, ctx: RunContext, deployment: str) -> StateFile:
        if not ctx.store.local:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "defaults.artifact_root",
                        f"the local deploy target needs a local artifact root, got {ctx.store.root}",
                    )
                ]
            )
        return StateFile(ctx, deployment)

    def _load(self, state_file: StateFile, deployment: str, *, model_name: str) -> DeploymentState:
        state = state_file.load()
        if state is None:
            return DeploymentState(deployment=deployment, target=self.name, model_name=model_name)
        self._check_target(state)
        return state

    def _check_target(self, state: DeploymentState) -> None:
        if state.target != self.name:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.name",
                        f"deployment {state.deployment!r} is served by target {state.target!r}, not "
                        f"{self.name!r}; pick another deployment name",
                    )
                ]
            )

    def _cleanup(self, state_file: StateFile, state: DeploymentState) -> None:
        """Stop what an earlier deploy left behind: a crashed attempt's candidate, retired servers.

        Also servers no state records: started by an attempt killed before it could
        save the candidate. Callers hold the deployment's lock, so no deploy that could
        still record such a server is running.
        """
        leftovers = []
        candidate = self._server(state, "candidate")
        if candidate is not None:
            leftovers.append(candidate)
        leftovers += [LocalServer.model_validate(s) for s in state.runtime.get("retiring") or []]
        live = self._server(state, "live")
        recorded = {server.pid for server in [*leftovers, *([live] if live is not None else [])]}
        for pid in stray_servers(state_file.directory(), keep=recorded):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if not leftovers:
            return
        for server in leftovers:
            stop_server(server)
        state.runtime["candidate"] = None
        state.runtime["retiring"] = []
        state_file.save(state)

    @staticmethod
    def _server(state: DeploymentState, slot: str) -> LocalServer | None:
        raw = state.runtime.get(slot)
        if not raw:
            return None
        return LocalServer.model_validate({k: v for k, v in raw.items() if k != "running"})

    def _fetch(self, ctx: RunContext, state_file: StateFile, model: ModelSpec) -> Path:
        """A local copy of the version's artifacts: versions are immutable, so one download each."""
        target = state_file.directory() / "models" / model.name / model.version
        if (target / "MLmodel").is_file():
            try:
                check_artifacts(model, target)
                return target
            except GateFailure:
                ctx.logger.warning(
                    "deploy: the local copy of %s changed; downloading it again", model.model_uri
                )
        from mlsteps.backends import mlflow as mlflow_backend

        mlflow_backend.configure(ctx)
        artifacts = require("mlflow.artifacts")
        staging = target.with_name(f".{model.version}.{os.getpid()}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with _quiet_downloads():
                artifacts.download_artifacts(artifact_uri=model.model_uri, dst_path=str(staging))
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise mlflow_backend.wrap(exc, f"could not download {model.model_uri}") from exc
        if not (staging / "MLmodel").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise BackendError("mlflow", f"{model.model_uri} has no MLmodel file: not an MLflow model")
        try:
            check_artifacts(model, staging)
        except GateFailure:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        return target

    def _config_hash(self) -> str:
        return hash_value(self.config.model_dump(mode="json", include={"host", "workers"}))


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow download progress bars in step logs (restored afterwards: the setting is process-wide)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _model_uri(name: str | None, version: str | None) -> str:
    return f"models:/{name}/{version}" if name and version else ""


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def stop_all(ctx: RunContext, *, actor: str = "", reason: str = "") -> list[str]:
    """Stop every local deployment under ``ctx``'s artifact root; the names of those stopped.

    For test teardown and ``mlsteps deploy stop --all``: nothing keeps serving afterwards.
    """
    from mlsteps.deploy.base import STATE_DIR, STATE_FILE

    stopped = []
    root = Path(ctx.store.root) / STATE_DIR
    target = LocalTarget()
    for path in sorted(root.glob(f"*/{STATE_FILE}")):
        state = StateFile(ctx, path.parent.name).load()
        if state is None or state.target != LocalTarget.name:
            continue
        target.stop(ctx, state.deployment, actor=actor, reason=reason)
        stopped.append(state.deployment)
    return stopped
