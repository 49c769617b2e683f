"""A fork server for crash tests: import the heavy libraries once, fork one process per step attempt.

Importing MLflow, scikit-learn and Feast takes ~10 s on the CI machine, longer than
the steps under test; starting a fresh interpreter per kill point would spend the
time budget on imports and put almost every kill before the step even began. So
this process imports everything once, then for each ``run`` request forks a child
that runs one step attempt (a ``module:function`` with JSON keyword arguments) and
exits. The test process SIGKILLs the child after a seeded delay: a real process,
killed by a real signal, at a real point of the step's work.

Protocol: one JSON object per line on stdin, one reply per line on stdout.
``{"cmd": "run", "target": "mod:fn", "kwargs": {...}, "log": path}`` -> ``{"pid": n}``;
``{"cmd": "wait", "pid": n}`` -> ``{"returncode": rc}`` (negative: killed by that signal).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _child(request: dict[str, Any]) -> int:
    """Runs in the forked child: detach from the protocol pipes, run the target, exit code."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        _resolve(request["target"])(**request["kwargs"])
    except SystemExit as exc:
        return int(exc.code or 0)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    for item in sys.argv[1:]:  # modules to import, or module:function to call
        if ":" in item:
            _resolve(item)()
        else:
            importlib.import_module(item)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "run":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _child(request)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            reply: dict[str, Any] = {"pid": pid}
        elif request["cmd"] == "wait":
            _, status = os.waitpid(int(request["pid"]), 0)
            reply = {"returncode": os.waitstatus_to_exitcode(status)}
        else:
            reply = {"error": f"unknown command {request['cmd']!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
