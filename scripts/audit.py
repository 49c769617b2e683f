"""``make audit``: pip-audit over every locked environment's exact requirements.

Exports each environment's pinned requirements from ``uv.lock`` (the core with its
dev tools, each adapter, the scan tools) and asks pip-audit about them, writing one
Markdown report per environment under ``audit/``. Exit codes: 0 no known
vulnerability; 1 vulnerabilities found (the reports list them); 2 the audit could
not run, including when pip-audit skipped packages because no vulnerability
service answered (it would otherwise print "No known vulnerabilities found").

``--osv-url URL`` (``make audit AUDIT_OSV_URL=URL``) asks an OSV-compatible service at
``URL`` (e.g. a mirror of api.osv.dev inside a network without internet access)
instead of PyPI's JSON API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "audit"
UV = (os.environ.get("UV") or shutil.which("uv") or "python3 -m uv").split()
PIP_AUDIT = ROOT / ".venvs" / "scan" / "bin" / "pip-audit"
ENVS: dict[str, list[str]] = {
    "core": ["--package", "mlsteps", "--all-extras", "--group", "dev"],
    "airflow": ["--package", "mlsteps-airflow", "--all-extras"],
    "dagster": ["--package", "mlsteps-dagster", "--all-extras"],
    "prefect": ["--package", "mlsteps-prefect", "--all-extras"],
    "scan": ["--only-group", "scan"],
}


def parse_args(argv: list[str]) -> tuple[Path, list[str]]:
    """Where the reports go, and pip-audit's vulnerability-service options."""
    import argparse

    parser = argparse.ArgumentParser(prog="audit.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="report directory (default: audit/)")
    parser.add_argument(
        "--osv-url",
        help="OSV-compatible query endpoint (https://.../v1/query); default: PyPI's JSON API",
    )
    args = parser.parse_args(argv)
    service = ["--vulnerability-service", "osv", "--osv-url", args.osv_url] if args.osv_url else []
    return args.out, service


def main(argv: list[str] | None = None) -> int:
    out, service = parse_args(sys.argv[1:] if argv is None else argv)
    if not PIP_AUDIT.exists():
        print(f"pip-audit is missing at {PIP_AUDIT}: `make env-scan` creates it", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UV_PREVIEW_FEATURES": "package-conflicts"}
    found = unaudited = total = 0
    for name, args in ENVS.items():
        req = out / f"{name}-requirements.txt"
        subprocess.run(
            [*UV, "export", "--frozen", "--no-hashes", "--no-emit-workspace", *args, "-o", str(req)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        result = out / f"{name}.json"
        result.unlink(missing_ok=True)  # a report left by an earlier run must not stand in for this one
        run = subprocess.run(
            [
                *(str(PIP_AUDIT), "-r", str(req), "--no-deps", "--disable-pip", "--progress-spinner", "off"),
                *("-f", "json", "-o", str(result)),
                *service,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        # pip-audit exits 1 both when it found vulnerabilities and when it failed (e.g. the
        # service answered with an error): only a written report tells the two apart.
        if run.returncode not in (0, 1) or not result.is_file():
            print(f"{name}: pip-audit failed (exit {run.returncode}):\n{run.stderr[-2000:]}", file=sys.stderr)
            return 2
        report = json.loads(result.read_text())
        deps = report.get("dependencies", [])
        vulns = [
            (d["name"], d["version"], v["id"], v.get("fix_versions"))
            for d in deps
            for v in d.get("vulns", [])
        ]
        skipped = [d for d in deps if d.get("skip_reason")]
        total += len(deps)
        found += len(vulns)
        unaudited += len(skipped)
        lines = [f"# pip-audit: {name} ({len(deps)} pinned packages, {len(skipped)} not audited)", ""]
        lines += [
            f"- {n} {v}: {vid} (fixed in {', '.join(fix or []) or 'no release yet'})"
            for n, v, vid, fix in vulns
        ]
        lines += [f"- not audited: {d['name']} {d.get('version', '')}: {d['skip_reason']}" for d in skipped]
        (out / f"{name}.md").write_text("\n".join(lines) + "\n")
        print(f"{name}: {len(deps)} packages, {len(vulns)} known vulnerabilities, {len(skipped)} not audited")
    if unaudited:
        print(
            f"audit incomplete: {unaudited} of {total} packages could not be audited (no vulnerability "
            "service answered: pip-audit needs pypi.org's JSON API, or an OSV service given by "
            "--osv-url); see audit/*.md",
            file=sys.stderr,
        )
        return 2
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
