#!/usr/bin/env bash
# Create .venvs/zenml from benchmarks/zenml/requirements.txt (exact pins), outside the uv
# workspace and its lock. Idempotent: does nothing when the environment already holds exactly
# these pins (a hash of requirements.txt is kept in the environment).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venvs/zenml"
req="$here/requirements.txt"
python="${PYTHON:-python3}"
if command -v uv >/dev/null 2>&1; then uv=(uv); else uv=("$python" -m uv); fi
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "zenml env up to date: $venv"
    exit 0
fi
"${uv[@]}" --version >/dev/null 2>&1 || "$python" -m pip install --quiet "uv>=0.9"
[[ -x "$venv/bin/python" ]] || "${uv[@]}" venv --quiet --python "$python" "$venv"
# `pip sync` also removes anything not pinned, so the environment is exactly requirements.txt.
VIRTUAL_ENV="$venv" "${uv[@]}" pip sync --quiet --python "$venv/bin/python" "$req"
# The benchmark runs its processes with PYTHONPYCACHEPREFIX="$venv/pycache" (bytecode cached there,
# never in the other environments): compile this environment's modules there once, now.
PYTHONPYCACHEPREFIX="$venv/pycache" "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" >/dev/null || true
echo "$want" >"$stamp"
echo "zenml env ready: $venv"
