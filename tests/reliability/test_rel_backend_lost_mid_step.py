"""The MLflow server lost in the middle of ``register``, at every request, then back: one version, nothing torn.

The register step talks to a real ``mlflow server`` on PostgreSQL through a small
HTTP proxy this test controls. A clean registration through the proxy counts the
step's requests (N). Then, for every request index k < N and in two ways, the
backend goes away in the middle of the step:

- ``refused``: request k and every later one are cut before they reach the server
  (the server went down, or the network did);
- ``lost_reply``: request k reaches the server and does its work, but its reply is
  lost, and so is everything after (the write went through, the client never knew).

Each such attempt must fail with a ``BackendError`` naming MLflow (not hang, not
crash with a raw exception), and the retry of the same run key, once the backend
is back, must finish the job: exactly one model version carrying the run key and
its complete tags, the aliases set, ``champion`` promoted, the promotion lock
released, and lineage showing the failed attempt and the succeeded one.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

#: Headers that belong to one hop, not to the request or reply being forwarded.
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Faults:
    """Which requests the proxy lets through: all, or all before ``from_index`` (counting from 0)."""

    mode: str = "pass"  # pass | refused | lost_reply
    from_index: int = 0
    seen: int = 0
    log: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, what: str) -> str:
        """This request's fate: ``forward``, ``cut`` (never sent on) or ``drop_reply`` (sent, reply lost)."""
        with self.lock:
            index = self.seen
            self.seen += 1
            self.log.append(what)
        if self.mode == "pass" or index < self.from_index:
            return "forward"
        if self.mode == "lost_reply" and index == self.from_index:
            return "drop_reply"
        return "cut"


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        body = self._body()
        fate = self.server.faults.next(f"{self.command} {self.path.split('?')[0]}")
        if fate == "cut":
            self.close_connection = True  # no reply at all: the client sees the connection drop
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
        finally:
            upstream.close()
        if fate == "drop_reply":
            self.close_connection = True
            return
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Proxy)
        self.upstream = upstream
        self.faults = Faults()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy(pg_mlflow_server: Any) -> Iterator[_ProxyServer]:
    server = _ProxyServer(urlsplit(pg_mlflow_server.url).netloc)
    thread = threading.Thread(target=server.serve_forever, name="mlflow-fault-proxy", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_lost_at_every_request_of_register_then_back(
    proxy: _ProxyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlsteps.backends.mlflow import configure, ensure_experiment
    from mlsteps.context import MlflowSettings, RunKey, build_context
    from mlsteps.errors import BackendError
    from mlsteps.lineage import LineageRecorder
    from mlsteps.refs import ModelRef, ReportRef
    from mlsteps.step import execute_step
    from mlsteps.steps.register import LINEAGE_TAG, LOCK_SUFFIX, RUN_KEY_TAG, RegisterStep

    # MLflow's own retries off: each lost request fails the step at once (the default is minutes).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    def context(run_id: str, attempt: int = 1) -> Any:
        return build_context(
            RunKey(pipeline="lost", run_id=run_id, step="register", attempt=attempt),
            artifact_root=str(tmp_path / "art"),
            base_dir=tmp_path,
            mlflow=MlflowSettings(tracking_uri=proxy.url, experiment="lost-mid-step"),
        )

    # One logged model (through the proxy, no faults), registered under a fresh name per case.
    setup = context("setup")
    client = configure(setup)
    experiment_id = ensure_experiment(setup, client)
    X, y = load_iris(return_X_y=True, as_frame=True)
    saved = tmp_path / "saved-model"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=200).fit(X, y), str(saved), pip_requirements=["scikit-learn"]
    )
    run = client.create_run(experiment_id, tags=setup.tags())
    logged = client.create_logged_model(experiment_id, name="model", source_run_id=run.info.run_id)
    client.log_model_artifacts(logged.model_id, str(saved))
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_terminated(run.info.run_id)
    summary = {"metrics": {"accuracy": 0.97}, "thresholds": {"accuracy": ">= 0.9"}, "failing": []}
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps({"passed": True, **summary}))
    inputs = {
        "model": ModelRef(uri=f"models:/{logged.model_id}", run_id=run.info.run_id, model_id=logged.model_id),
        "evaluation": ReportRef(uri=str(report), passed=True, summary=summary),
    }

    def register(name: str, run_id: str, attempt: int) -> Any:
        config = {"name": name, "aliases": ["challenger"], "promote": True, "promote_metric": "accuracy"}
        return execute_step(RegisterStep, context(run_id, attempt), config, inputs)

    # A clean registration counts the step's requests.
    proxy.faults = Faults()
    register("lost-count", "count", 1)
    requests = list(proxy.faults.log)
    assert len(requests) >= 8, requests  # version, tags, lock, aliases...

    # The state a loss leaves depends only on which writes went through before it, so the
    # distinct points are: before any request, and at each write (refused: it never lands;
    # lost_reply: it lands unacknowledged). A lost read is a refusal at the next write.
    writes = [i for i, r in enumerate(requests) if r.split()[0] in ("POST", "PUT", "PATCH", "DELETE")]
    (released,) = [i for i in writes if requests[i].endswith("/registered-models/delete")]  # the lock
    cases = [("refused", 0)] + [(mode, k) for mode in ("refused", "lost_reply") for k in writes]
    failed_at: dict[str, list[str]] = {"refused": [], "lost_reply": []}
    for mode, k in cases:
        name, run_id = f"lost-{mode}-{k}", f"{mode}-{k}"
        proxy.faults = Faults(mode=mode, from_index=k)
        error: BackendError | None = None
        try:
            register(name, run_id, 1)
        except BackendError as exc:
            error = exc
        failed = error is not None
        assert error is None or error.backend == "mlflow", error
        if failed:
            failed_at[mode].append(requests[k])
        else:
            # Only what follows the work may be lost without failing the step: the lock's release
            # (its lease expires; a retry of the same run key takes it over) and the cache bookkeeping.
            assert k >= released, (mode, k, requests[k:])
        proxy.faults = Faults()  # the backend is back
        result = register(name, run_id, 2)

        key = f"local/lost/{run_id}/register"
        versions = list(client.search_model_versions(f"name='{name}'"))
        assert [v.version for v in versions] == ["1"], (mode, k, [v.tags for v in versions])
        (version,) = versions
        assert version.tags[RUN_KEY_TAG] == key
        assert str(result.outputs["model_version"].version) == "1"
        model = client.get_registered_model(name)
        assert model.aliases == {"challenger": "1", "champion": "1"}, (mode, k, model.aliases)
        assert client.search_registered_models(f"name='{name}{LOCK_SUFFIX}'") == [], (mode, k)
        records = [
            r for r in LineageRecorder(context(run_id).store).records(run_id) if r.run_key.step == "register"
        ]
        statuses = sorted((r.run_key.attempt, r.status) for r in records)
        assert statuses == (
            [(1, "failed"), (2, "succeeded")] if failed else [(1, "succeeded"), (2, "succeeded")]
        )
        (retry,) = [r for r in records if r.run_key.attempt == 2]
        assert version.tags[LINEAGE_TAG] == retry.record_id  # the version leads to the attempt that finished

    # Every write before the lock's release failed the step when lost, in both ways.
    assert len(failed_at["refused"]) == 1 + writes.index(released), failed_at
    assert len(failed_at["lost_reply"]) == writes.index(released), failed_at
    print(
        f"\n{len(requests)} requests ({len(writes)} writes) per registration; {len(cases)} losses, every retry completed"
    )
