"""Test-side helpers of the reliability suite: the fork-server client, kill chains, invariant checks."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class ForkServer:
    """Client of ``_rel_forkserver.py`` (see its docstring): fork a step attempt, kill it, reap it."""

    def __init__(self, workdir: Path, preload: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        # One BLAS/OpenMP thread: forking a process with a thread pool is asking for deadlocks.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        env["PYTHONWARNINGS"] = "ignore"
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_rel_forkserver.py"), *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "forkserver.log", "wb"),  # noqa: SIM115 - lives as long as the server
            env=env,
            cwd=str(workdir),
        )
        self._read(timeout_s=300)

    def _read(self, timeout_s: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise RuntimeError(f"fork server silent for {timeout_s} s; see {self.workdir}/forkserver.log")
        line = self.proc.stdout.readline()
        if not line:
            log = (self.workdir / "forkserver.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"fork server exited:\n{log}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout_s=900)

    def start(self, target: str, kwargs: dict[str, Any], log: Path) -> int:
        return int(self._ask(cmd="run", target=target, kwargs=kwargs, log=str(log))["pid"])

    def wait(self, pid: int) -> int:
        return int(self._ask(cmd="wait", pid=pid)["returncode"])

    def attempt(self, kwargs: dict[str, Any], *, kill_after_s: float | None, log: Path) -> Attempt:
        """Run one step attempt (``_rel_tasks.run_step``); SIGKILL it ``kill_after_s`` after the fork."""
        started = time.monotonic()
        pid = self.start("_rel_tasks:run_step", kwargs, log)
        if kill_after_s is not None:
            time.sleep(max(0.0, started + kill_after_s - time.monotonic()))
            # A child that already exited is a zombie until reaped: the signal is then a no-op.
            os.kill(pid, signal.SIGKILL)
        code = self.wait(pid)
        return Attempt(
            attempt=int(kwargs["attempt"]),
            returncode=code,
            killed=code == -signal.SIGKILL,
            elapsed_s=time.monotonic() - started,
            kill_after_s=kill_after_s,
            log=log,
        )

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Attempt:
    """One attempt of a kill chain and how it ended."""

    attempt: int
    returncode: int
    killed: bool
    elapsed_s: float
    kill_after_s: float | None
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the attempt's output: what a failure report needs."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@dataclass
class Chain:
    """A run key's attempts: some killed at seeded delays, then one left to finish."""

    seed: int
    run_id: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(a.killed for a in self.attempts)


def kill_delays(seed: int, count: int, duration_s: float) -> list[float]:
    """``count`` kill delays in [0, ``duration_s``), deterministic per seed."""
    rng = random.Random(seed)
    return [round(rng.uniform(0.0, duration_s), 3) for _ in range(count)]


def run_chain(
    server: ForkServer,
    *,
    seed: int,
    kwargs: dict[str, Any],
    delays: list[float],
    workdir: Path,
    after_kill: Any = None,
) -> Chain:
    """Attempts 1..n of one run key killed after ``delays``, then attempt n+1 runs to the end.

    ``after_kill(attempt)`` checks the invariants that must hold right after each kill.
    """
    chain = Chain(seed=seed, run_id=str(kwargs["run_id"]))
    for number, delay in enumerate([*delays, None], start=1):
        args = {**kwargs, "attempt": number, "result": str(workdir / f"result-{chain.run_id}-{number}.json")}
        outcome = server.attempt(args, kill_after_s=delay, log=workdir / f"{chain.run_id}-{number}.log")
        chain.attempts.append(outcome)
        if outcome.killed and after_kill is not None:
            after_kill(outcome)
    last = chain.attempts[-1]
    assert last.returncode == 0, (
        f"the final attempt of {chain.run_id} failed ({last.returncode}):\n{last.log_tail()}"
    )
    return chain


def result_of(workdir: Path, chain: Chain) -> dict[str, Any]:
    """The result JSON the chain's final attempt wrote."""
    data: dict[str, Any] = json.loads(
        (workdir / f"result-{chain.run_id}-{chain.attempts[-1].attempt}.json").read_text()
    )
    return data


def lineage_files(root: Path) -> list[Path]:
    return sorted((root / "lineage").glob("*/*.json"))


def check_lineage(root: Path, chain: Chain, *, step: str) -> list[Any]:
    """Every lineage file parses; the run key has one complete record per attempt that got there.

    A SIGKILLed attempt leaves its ``started`` marker (or, killed before the marker
    was written, nothing); the attempt that finished has one ``succeeded`` record.
    Returns the run's records.
    """
    from mlsteps.lineage import LineageRecord, interrupted

    records = [LineageRecord.model_validate_json(p.read_text()) for p in lineage_files(root)]
    mine = [r for r in records if r.run_key.run_id == chain.run_id and r.run_key.step == step]
    by_attempt: dict[int, list[Any]] = {}
    for rec in mine:
        by_attempt.setdefault(rec.run_key.attempt, []).append(rec)
    final = chain.attempts[-1].attempt
    assert [r.status for r in by_attempt.get(final, [])] == ["succeeded"], by_attempt.get(final)
    for outcome in chain.attempts[:-1]:
        statuses = sorted(r.status for r in by_attempt.get(outcome.attempt, []))
        if outcome.killed:
            # Killed: its started marker, or nothing if it died before writing it; or, if it
            # died after writing its final record (between that and exiting), that record.
            assert statuses in ([], ["started"], ["succeeded"]), (outcome, statuses)
        else:
            assert statuses == ["succeeded"], f"{outcome} {statuses}; its output:\n{outcome.log_tail()}"
    crashed = {r.run_key.attempt for r in interrupted(mine)}
    assert crashed == {a for a, recs in by_attempt.items() if [r.status for r in recs] == ["started"]}
    return mine


class TcpFaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a server, that can lose the server mid-conversation.

    Armed with ``cut_after(n)``, it forwards the first ``n`` bytes clients send
    (counted over every connection since arming, so a seeded ``n`` lands at a
    reproducible point of a deterministic conversation), then drops every open
    connection in both directions and drops each new one on accept until
    ``restore()``: what a client sees when the server, or the network to it, goes
    away. Bytes forwarded before the cut reach the server, so a command completed
    just before it may run with its reply lost. Threads only: it works with any
    client, blocking or async.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._limit: int | None = None
        self.forwarded = 0  # client -> server bytes since the last arm/restore
        self.down = False
        self.refused = 0  # connections dropped on accept while down
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-fault-proxy", daemon=True).start()

    def cut_after(self, nbytes: int) -> None:
        """Pass through until clients have sent ``nbytes`` more bytes, then lose the server."""
        with self._lock:
            self._limit, self.forwarded, self.down, self.refused = nbytes, 0, False, 0

    def restore(self) -> None:
        """The server is back: forward everything, count afresh."""
        with self._lock:
            self._limit, self.forwarded, self.down = None, 0, False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            self.down = True
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv; it closes the socket

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=30)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.down:
                    break
                allowed = len(data)
                if up:
                    with self._lock:
                        if self._limit is not None:
                            allowed = max(0, min(allowed, self._limit - self.forwarded))
                        self.forwarded += allowed
                if allowed:
                    dst.sendall(data[:allowed])
                if allowed < len(data):
                    self._cut()
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((src, dst))
            for sock in (src, dst):  # shutdown first: it wakes the other pump, blocked in recv
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
