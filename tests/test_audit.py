"""``make audit`` (scripts/audit.py) reports what the vulnerability service knows, and never
reports "nothing known" when the service did not answer.

The real pip-audit audits every locked environment's exported requirements; the
vulnerability service is a local OSV-compatible HTTP endpoint (pip-audit's
``--osv-url``), because no real one is reachable from the development machine. It
holds one planted advisory, so the test can tell a report that lists it from one
that lost it. That real advisories are fetched is not tested here (the shipped
GitHub workflow runs ``make audit`` against PyPI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "scripts" / "audit.py"
PLANTED = "pydantic"  # in every environment's lock
ADVISORY = "MLSTEPS-TEST-0001"


class OsvService(ThreadingHTTPServer):
    """``POST /v1/query`` as api.osv.dev answers it; ``status`` other than 200 plays a broken service."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.queries: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/query"


class _Handler(BaseHTTPRequestHandler):
    server: OsvService

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.queries.append(query)
        if self.server.status != 200:
            self.send_error(self.server.status)
            return
        name = query["package"]["name"]
        body = (
            {
                "vulns": [
                    {
                        "id": ADVISORY,
                        "summary": "planted by the test",
                        "affected": [
                            {
                                "package": {"name": name, "ecosystem": "PyPI"},
                                "ranges": [
                                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}
                                ],
                            }
                        ],
                    }
                ]
            }
            if name == PLANTED
            else {}
        )
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(status: int = 200) -> Iterator[OsvService]:
    server = OsvService(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def osv() -> Iterator[OsvService]:
    yield from serve()


@pytest.fixture
def broken_osv() -> Iterator[OsvService]:
    yield from serve(503)


def audit(out: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), "--out", str(out), "--osv-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def pins(requirements: Path) -> dict[str, str]:
    """Package -> version of an exported requirements file, for this interpreter and platform.

    The export covers every platform (``; sys_platform == 'win32'``, several numpy lines
    for different Python versions); pip-audit audits the lines whose markers hold here.
    """
    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        if "==" not in line or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            out[req.name.lower()] = next(iter(req.specifier)).version
    return out


@pytest.mark.slow
def test_every_locked_package_is_audited_and_a_known_vulnerability_is_reported(
    tmp_path: Path, osv: OsvService
) -> None:
    run = audit(tmp_path, osv.url)

    assert run.returncode == 1, run.stdout + run.stderr  # 1: vulnerabilities found
    envs = ["core", "airflow", "dagster", "prefect", "scan"]
    queried = {(q["package"]["name"], q["version"]) for q in osv.queries}
    for env in envs:
        pinned = pins(tmp_path / f"{env}-requirements.txt")
        assert len(pinned) > 20, env
        # every pinned package of every environment was asked about, at its locked version
        missing = {(n, v) for n, v in pinned.items()} - queried
        assert not missing, (env, sorted(missing)[:5])
        report = (tmp_path / f"{env}.md").read_text()
        if PLANTED in pinned:
            assert f"- {PLANTED} {pinned[PLANTED]}: {ADVISORY} (fixed in 999.0)" in report, report
            assert f"{env}: {len(pinned)} packages, 1 known vulnerabilities, 0 not audited" in run.stdout
        else:
            assert ADVISORY not in report
    assert PLANTED in pins(tmp_path / "core-requirements.txt")


@pytest.mark.slow
def test_a_service_that_does_not_answer_is_an_incomplete_audit_not_a_clean_one(
    tmp_path: Path, broken_osv: OsvService
) -> None:
    run = audit(tmp_path, broken_osv.url)

    assert run.returncode == 2, run.stdout + run.stderr
    assert broken_osv.queries  # pip-audit did ask
    assert "No known vulnerabilities" not in run.stdout + run.stderr
    assert "could not be audited" in run.stderr or "pip-audit failed" in run.stderr, run.stderr
